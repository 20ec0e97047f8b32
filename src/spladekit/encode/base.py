"""What every SPLADE encoder shares, without torch: settings checked once, input checks, the encode report,
vocabulary and identity, prompts and lower-casing, and the query / document / inspect entry points.

``SpladeEncoder`` (torch) and ``LiteEncoder`` (numpy) implement ``encode``; everything else lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..errors import InputError
from ..sparse import SparseVectors
from .loading import ModelSpec, weights_sha256

Mode = Literal["exact", "fast", "fp32"]
MODES: tuple[str, ...] = get_args(Mode)
Kind = Literal["query", "document"]


def check_mode(mode: str) -> Mode:
    """An encoding mode, validated: ``exact`` (fp32 output, screened), ``fp32`` or ``fast``."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def check_threads(threads: int | None) -> int | None:
    """A thread count (None: torch's default, every core)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    return threads


def check_texts(texts) -> list[str]:
    """A string or a non-empty list of strings, as a list."""
    if isinstance(texts, str):
        return [texts]
    if texts is None or not isinstance(texts, (list, tuple)) and not hasattr(texts, "__iter__"):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise InputError("texts is an empty list: nothing to encode")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}] is {type(t).__name__}, expected str")
    return texts


@dataclass
class EncodeReport:
    """What the last encode call did: texts, tokens, how many were truncated, empty inputs."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    empty: int = 0


def build_vocab(size: int, token_of: Callable[[int], str | None]) -> list[str]:
    """Token of each term id, ``[unused_i]`` where the tokenizer has none."""
    return [t if (t := token_of(i)) is not None else f"[unused_{i}]" for i in range(size)]


def sparsify(w: np.ndarray, max_active_dims: int | None, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(term ids, weights) of a dense weight row: weights above ``threshold``, the ``max_active_dims`` largest."""
    idx = np.flatnonzero(w > threshold)
    val = w[idx]
    if max_active_dims is not None and len(idx) > max_active_dims:
        top = np.sort(np.argsort(-val, kind="stable")[:max_active_dims])
        idx, val = idx[top], val[top]
    return idx.astype(np.int32), val.astype(np.float32)


class EncoderBase:
    """Identity, vocabulary and entry points of a SPLADE encoder; subclasses implement ``encode``."""

    spec: ModelSpec
    mode: Mode = "exact"
    last_report: EncodeReport
    _weights_hash: str | None = None
    _vocab: list[str] | None = None
    _token_to_id: dict[str, int] | None = None

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def _token_of(self, i: int) -> str | None:
        raise NotImplementedError

    @property
    def vocab(self) -> list[str]:
        """Token of each term id (built once)."""
        if self._vocab is None:
            self._vocab = build_vocab(self.vocab_size, self._token_of)
        return self._vocab

    @property
    def token_to_id(self) -> dict[str, int]:
        if self._token_to_id is None:
            self._token_to_id = {t: i for i, t in enumerate(self.vocab)}
        return self._token_to_id

    @property
    def weights_hash(self) -> str:
        """sha256 of the weights file, computed once: identifies the model that built an index."""
        if self._weights_hash is None:
            self._weights_hash = weights_sha256(self.spec.transformer_path)
        return self._weights_hash

    def info(self) -> dict:
        """Identity and settings, as recorded in indexes and evaluation reports."""
        return {
            "name": self.name,
            "path": str(self.spec.root),
            "weights_sha256": self.weights_hash,
            "max_length": self.max_length,
            "pooling": self.spec.pooling_strategy,
            "activation": self.spec.activation,
            "vocab_size": self.vocab_size,
            "mode": self.mode,
        }

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: str | Sequence[str], *, kind: Kind = "document", **options) -> SparseVectors:
        raise NotImplementedError

    def encode_queries(self, texts: str | Sequence[str], **kwargs) -> SparseVectors:
        """Encode queries (with the model's query prompt, if any)."""
        return self.encode(texts, kind="query", **kwargs)

    def encode_documents(self, texts: str | Sequence[str], **kwargs) -> SparseVectors:
        """Encode documents (with the model's document prompt, if any)."""
        return self.encode(texts, kind="document", **kwargs)

    def model_texts(self, texts: list[str], kind: str) -> tuple[list[str], list[int]]:
        """Texts as the model reads them (prompt, lower-casing) and the positions of the non-empty ones."""
        prompt = self.spec.prompts.get(kind, "")
        texts = [(prompt + t) if t.strip() else "" for t in texts]
        if self.spec.do_lower_case:
            texts = [t.lower() for t in texts]
        return texts, [i for i, t in enumerate(texts) if t.strip()]

    # ------------------------------------------------------------------ inspection
    def top_terms(
        self, text: str, *, query: bool = False, top_k: int = 20
    ) -> tuple[list[tuple[str, float]], int]:
        """The ``top_k`` heaviest terms of one text and its number of active terms."""
        vec = self.encode([text], kind="query" if query else "document")
        return vec.decode(top_k)[0], int(vec.active_dims()[0])

    def inspect(self, text: str, *, query: bool = False, top_k: int = 20) -> list[tuple[str, float]]:
        """Top terms and weights of one text."""
        return self.top_terms(text, query=query, top_k=top_k)[0]

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        """Term ids of tokens; an unknown token is an error."""
        out = []
        for t in tokens:
            if t not in self.token_to_id:
                raise InputError(f"token {t!r} is not in the model's vocabulary")
            out.append(self.token_to_id[t])
        return out
