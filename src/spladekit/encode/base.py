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
from .static_query import QueryTable, load_query_table
from .windows import TRUNCATE, LongDocs, Units, check_long_docs, merge_units, whole_text_units, window_units

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
    """What the last encode call did: texts, tokens encoded, texts truncated, empty inputs, windows encoded and
    texts longer than one window (``max`` / ``passages``)."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    empty: int = 0
    windows: int = 0
    windowed: int = 0


@dataclass
class Passages:
    """Windows of documents encoded one by one (``encode_passages``): a vector per passage, the text each belongs
    to (``owner``, ascending), its character span in that text, and how many passages each text has."""

    vectors: SparseVectors
    owner: np.ndarray
    spans: list[tuple[int, int]]
    counts: np.ndarray

    def document_vectors(self) -> SparseVectors:
        """One vector per text: the per-term max over its passages (what ``max`` gives)."""
        rows = merge_units(list(self.vectors), self.counts)
        return SparseVectors.from_rows(rows, self.vectors.dim, self.vectors.vocab)


def build_vocab(size: int, token_of: Callable[[int], str | None]) -> list[str]:
    """Token of each term id, ``[unused_i]`` where the tokenizer has none."""
    return [t if (t := token_of(i)) is not None else f"[unused_{i}]" for i in range(size)]


def sparsify(w: np.ndarray, max_active_dims: int | None, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(term ids, weights) of a dense weight row: weights above ``threshold``, the ``max_active_dims`` largest."""
    idx = np.flatnonzero(w > threshold)
    return select(idx, w[idx], max_active_dims, threshold)


def select(
    idx: np.ndarray, val: np.ndarray, max_active_dims: int | None, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``sparsify`` on a sparse row: weights above ``threshold``, the ``max_active_dims`` largest, in term order."""
    keep = val > threshold
    if not keep.all():
        idx, val = idx[keep], val[keep]
    if max_active_dims is not None and len(idx) > max_active_dims:
        top = np.sort(np.argsort(-val, kind="stable")[:max_active_dims])
        idx, val = idx[top], val[top]
    return idx.astype(np.int32), val.astype(np.float32)


EMPTY_ROW = (np.zeros(0, np.int32), np.zeros(0, np.float32))


class EncoderBase:
    """Identity, vocabulary and entry points of a SPLADE encoder; subclasses implement ``encode``."""

    spec: ModelSpec
    mode: Mode = "exact"
    # How documents longer than one window are encoded (queries are always truncated); see ``windows``.
    long_docs: LongDocs = LongDocs()
    last_report: EncodeReport
    _weights_hash: str | None = None
    _vocab: list[str] | None = None
    _token_to_id: dict[str, int] | None = None
    _query_table: QueryTable | None = None
    _special_ids: np.ndarray | None = None

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
        """Identity and settings (``identity()``), with the compute path this machine runs."""
        return {**self.identity(), "compute": self.compute_path()}

    def identity(self) -> dict:
        """The model's identity and settings, as recorded in indexes and evaluation reports: two encoders with
        the same identity give the same vectors (within float tolerance), whatever kernels each machine runs."""
        return {
            "name": self.name,
            "path": str(self.spec.root),
            "weights_sha256": self.weights_hash,
            "max_length": self.max_length,
            "pooling": self.spec.pooling_strategy,
            "activation": self.spec.activation,
            "vocab_size": self.vocab_size,
            "mode": self.mode,
            "long_docs": self.long_docs.record(),
            "query_side": self.query_table.record() if self.query_table is not None else {"kind": "mlm"},
        }

    def compute_path(self, mode: Mode | None = None) -> str:
        """Which computation ``mode`` runs on this machine, and why (``info()["compute"]``, ``spladekit inspect``);
        it describes the machine, not the model, so indexes do not record it."""
        return f"{mode or self.mode}: fp32 ({type(self).__name__})"

    # ------------------------------------------------------------------ inference-free query side
    @property
    def query_table(self) -> QueryTable | None:
        """The per-token query table of an inference-free model (loaded on first use), or None: queries then
        go through the masked-LM like documents."""
        if self._query_table is None and self.spec.query_side is not None:
            self._query_table = load_query_table(self.spec.query_side, self.vocab_size, self.max_length)
        return self._query_table

    def set_query_table(self, table: QueryTable | None) -> None:
        """Make queries table lookups (``None``: back to the masked-LM, unless the folder names a table)."""
        if table is not None and len(table.weights) != self.vocab_size:
            raise InputError(
                f"the query table has {len(table.weights)} weights, the model's vocabulary {self.vocab_size}"
            )
        self._query_table = table

    def _table_rows(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Queries through the table: the prompt as the model reads it, then each distinct token once."""
        table = self.query_table
        assert table is not None
        mtexts, non_empty = self.model_texts(texts, "query")
        ids, truncated = table.token_rows([mtexts[i] for i in non_empty]) if non_empty else ([], [])
        rows: list[tuple[np.ndarray, np.ndarray]] = [EMPTY_ROW] * len(texts)
        for i, r in zip(non_empty, table.rows(ids)):
            rows[i] = r
        self.last_report = EncodeReport(
            texts=len(texts),
            tokens=sum(len(x) for x in ids),
            truncated=sum(truncated),
            empty=len(texts) - len(non_empty),
            windows=len(non_empty),
        )
        return rows

    def _drop_special(self, rows: list) -> list:
        """OpenSearch doc-only models zero their special tokens in document vectors."""
        if not self.spec.drop_special:
            return rows
        if self._special_ids is None:
            names = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>")
            found = [self.token_to_id[t] for t in names if t in self.token_to_id]
            self._special_ids = np.asarray(sorted(found), np.int32)
        out = []
        for i, v in rows:
            keep = ~np.isin(i, self._special_ids)
            out.append((i[keep], v[keep]))
        return out

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        kind: Kind = "document",
        batch_size: int = 32,
        max_active_dims: int | None = None,
        threshold: float = 0.0,
        mode: Mode | None = None,
        show_progress: bool = False,
        long_docs: str | LongDocs | None = None,
        **options,
    ) -> SparseVectors:
        """Encode texts into a SparseVectors batch, rows in input order; empty strings give empty vectors.

        Documents follow ``long_docs`` (default: the encoder's ``long_docs``, ``max`` over windows); queries are
        truncated at ``max_length``; an inference-free model's queries are table lookups (``query_table``).
        See ``last_report`` for tokens, truncated texts and windows.
        """
        if kind == "query" and self.query_table is not None:
            self._check_run_mode(mode)
            rows = self._table_rows(check_texts(texts))
            if max_active_dims is not None or threshold > 0:
                rows = [select(i, v, max_active_dims, threshold) for i, v in rows]
            return SparseVectors.from_sorted_rows(rows, self.vocab_size, self.vocab)
        units, rows = self._run(texts, kind, long_docs, mode, batch_size, show_progress, options)
        rows = self._drop_special(units.merge(rows))
        merged = [select(i, v, max_active_dims, threshold) for i, v in rows]
        return SparseVectors.from_rows(merged, self.vocab_size, self.vocab)

    def encode_passages(
        self,
        texts: str | Sequence[str],
        *,
        long_docs: str | LongDocs | None = None,
        batch_size: int = 32,
        max_active_dims: int | None = None,
        threshold: float = 0.0,
        mode: Mode | None = None,
        show_progress: bool = False,
        **options,
    ) -> Passages:
        """Documents cut into windows (``long_docs``'s window and stride), one vector per window."""
        ld = self.document_settings(long_docs)
        ld = LongDocs("passages", ld.window, ld.stride)
        units, rows = self._run(texts, "document", ld, mode, batch_size, show_progress, options)
        vecs = [select(i, v, max_active_dims, threshold) for i, v in self._drop_special(rows)]
        return Passages(
            SparseVectors.from_rows(vecs, self.vocab_size, self.vocab), units.owner, units.spans, units.counts
        )

    def document_settings(self, long_docs: str | LongDocs | None = None) -> LongDocs:
        """``long_docs`` checked against this model (window ≤ max_length), or the encoder's own setting."""
        if long_docs is None:
            return self.long_docs
        return check_long_docs(long_docs, max_length=self.max_length)

    def _run(self, texts, kind, long_docs, mode, batch_size, show_progress, options):
        texts = check_texts(texts)
        mode = self._check_run_mode(mode)
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        units = self.plan_units(
            texts, kind, TRUNCATE if kind == "query" else self.document_settings(long_docs)
        )
        rows = self._encode_units(units, mode, batch_size, show_progress, kind, **options)
        self.last_report = EncodeReport(
            texts=len(texts),
            tokens=units.tokens,
            truncated=units.truncated,
            empty=sum(x is None for x in units.ids),
            windows=sum(1 for x in units.ids if x is not None),
            windowed=units.windowed,
        )
        return units, rows

    def _check_run_mode(self, mode: str | None) -> str:
        """The mode of one call (None: the encoder's); an encoder that cannot run a mode refuses it here."""
        return check_mode(mode) if mode is not None else self.mode

    def _encode_units(
        self, units: Units, mode: str, batch_size: int, show_progress: bool, kind: str, **options
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(term ids, weights) of every unit (``EMPTY_ROW`` for an empty one), in ``units.batches`` runs."""
        raise NotImplementedError

    def plan_units(self, texts: list[str], kind: str, long_docs: LongDocs) -> Units:
        """Token ids of what will be encoded: whole (truncated) texts, or windows with their character spans."""
        if long_docs.strategy == "truncate":
            ids, flags = self._tokenize(texts, kind)
            return whole_text_units(ids, flags, texts)
        tok = self._window_tokenizer
        if tok is None:
            raise InputError(
                f"{self.name}: long-document windows need a fast (tokenizers) tokenizer; use long_docs='truncate'"
            )
        mtexts, non_empty = self.model_texts(texts, kind)
        full: list = [None] * len(texts)
        if non_empty:
            with self._tok_lock:  # type: ignore[attr-defined]
                tok.no_padding()
                tok.no_truncation()
                self._truncation = None  # the next truncating call sets it again
                encs = tok.encode_batch([mtexts[i] for i in non_empty])
            for i, e in zip(non_empty, encs):
                full[i] = e
        prompt = self.spec.prompts.get(kind, "")
        return window_units(
            full, texts, mtexts, prompt, long_docs.window or self.max_length, long_docs.stride
        )

    @property
    def _window_tokenizer(self):
        """The ``tokenizers.Tokenizer`` that cuts windows (offsets, word ids), or None."""
        return None

    def _tokenize(self, texts: list[str], kind: str) -> tuple[list[list[int] | None], list[bool]]:
        """Token ids per text truncated at ``max_length`` (None for an empty text), and which were truncated."""
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
