"""Inference-free queries: a query is its own tokens, each weighted by a learned or IDF per-token table.

Documents are still expanded by the masked-LM at index time; only the query side changes, so a query costs a
tokenisation and a table lookup (no torch, no matrix product). Two published layouts are read:

- sentence-transformers: a ``Router`` whose query route is one ``SparseStaticEmbedding`` (a ``weight`` vector
  in ``model.safetensors`` and its own tokenizer). Its rule: tokens without special tokens, truncated at the
  tokenizer's ``model_max_length``, each distinct token once with weight ``table[token]``.
- OpenSearch doc-only models: the masked-LM plus ``idf.json`` (token -> weight). Its rule: the tokenizer's
  default call (with ``[CLS]``/``[SEP]``), each distinct token once, tokens missing from the JSON weigh 0.

A weight ≤ 0 makes no term (sparse vectors here are non-negative); ``negative`` counts such table entries.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelLoadError

ST_LAYOUT = "sentence-transformers"
IDF_JSON_LAYOUT = "idf.json"
# Sentinel values tokenizers write for "no limit"; a table query is then cut where the document model's is.
_NO_LIMIT = 100_000


@dataclass
class QuerySide:
    """Where a model folder keeps its query table (read by ``loading.read_spec``; loaded on first use)."""

    layout: str
    path: Path  # the SparseStaticEmbedding folder, or the idf.json file
    tokenizer_dir: Path


@dataclass
class QueryTable:
    """A per-token weight table and the tokenizer that turns a query into table rows."""

    weights: np.ndarray
    tokenizer: object  # tokenizers.Tokenizer
    add_special_tokens: bool
    max_length: int
    layout: str
    source: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        if w.ndim != 1 or not len(w):
            raise ModelLoadError(f"{self.source}: the query table must be a vector of weights, got {w.shape}")
        if not np.isfinite(w).all():
            raise ModelLoadError(f"{self.source}: the query table has NaN or infinite weights")
        self.weights = w
        tok = self.tokenizer
        tok.no_padding()  # type: ignore[attr-defined]
        tok.enable_truncation(self.max_length)  # type: ignore[attr-defined]
        self._sha: str | None = None

    @property
    def negative(self) -> int:
        return int((self.weights < 0).sum())

    @property
    def sha256(self) -> str:
        """Identity of the table (its weights), recorded with the model."""
        if self._sha is None:
            self._sha = hashlib.sha256(self.weights.tobytes()).hexdigest()
        return self._sha

    def record(self) -> dict:
        return {"kind": "table", "layout": self.layout, "sha256": self.sha256, "max_length": self.max_length}

    def token_rows(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text (the table's own tokenizer and rule) and which texts were truncated."""
        tok = self.tokenizer
        with self._lock:  # the Rust tokenizer is shared with other threads (a server's)
            if len(texts) == 1:  # a lone query: no batch (rayon) set-up
                encs = [tok.encode(texts[0], add_special_tokens=self.add_special_tokens)]  # type: ignore[attr-defined]
            else:
                encs = tok.encode_batch(texts, add_special_tokens=self.add_special_tokens)  # type: ignore[attr-defined]
        return [e.ids for e in encs], [bool(e.overflowing) for e in encs]

    def rows(self, ids_per_text: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(term ids, weights) of each tokenised text: each distinct token once, weight from the table."""
        out = []
        w = self.weights
        n = len(w)
        for ids in ids_per_text:
            terms = np.array(sorted({i for i in ids if 0 <= i < n}), dtype=np.int32)
            vals = w[terms]
            keep = vals > 0
            out.append((terms[keep], vals[keep]) if not keep.all() else (terms, vals))
        return out

    # ------------------------------------------------------------------ saving
    def save_sentence_transformers(self, folder: Path, tokenizer_dir: Path) -> None:
        """Write a ``SparseStaticEmbedding`` module folder (weights, config, the tokenizer files)."""
        from safetensors.numpy import save_file

        if self.add_special_tokens:
            raise InputError(
                "this query table adds [CLS]/[SEP] (OpenSearch rule); a sentence-transformers "
                "SparseStaticEmbedding never does, so it cannot be saved in that layout unchanged"
            )
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weight": np.ascontiguousarray(self.weights)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"frozen": False}, indent=4) + "\n")
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            src = tokenizer_dir / name
            if src.is_file():
                (folder / name).write_bytes(src.read_bytes())


def read_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder}: the query table needs a fast tokenizer (tokenizer.json)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - one line naming the file
        raise ModelLoadError(f"{path}: unreadable tokenizer ({e})") from None


def tokenizer_max_length(folder: Path, fallback: int) -> int:
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            mml = json.loads(cfg.read_text(encoding="utf-8")).get("model_max_length")
        except (OSError, json.JSONDecodeError):
            mml = None
        if isinstance(mml, int) and 0 < mml < _NO_LIMIT:
            return mml
    return fallback


def load_query_table(side: QuerySide, vocab_size: int, fallback_max_length: int) -> QueryTable:
    """The table a model folder names, checked against the document model's vocabulary size."""
    tok = read_tokenizer(side.tokenizer_dir)
    max_length = tokenizer_max_length(side.tokenizer_dir, fallback_max_length)
    if side.layout == ST_LAYOUT:
        from safetensors.numpy import load_file

        wfile = side.path / "model.safetensors"
        if not wfile.is_file():
            raise ModelLoadError(f"{side.path}: SparseStaticEmbedding folder without model.safetensors")
        try:
            tensors = load_file(str(wfile))
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"{wfile}: unreadable weights ({e})") from None
        if "weight" not in tensors:
            raise ModelLoadError(f"{wfile}: no 'weight' tensor (found {', '.join(tensors) or 'none'})")
        weights, special = tensors["weight"], False
    elif side.layout == IDF_JSON_LAYOUT:
        weights, special = idf_json_weights(side.path, tok, vocab_size), True
    else:
        raise ModelLoadError(f"unknown query table layout {side.layout!r}")
    if len(weights) != vocab_size:
        raise ModelLoadError(
            f"{side.path}: the query table has {len(weights)} weights, the document model's vocabulary "
            f"{vocab_size}: they must be the same model's"
        )
    return QueryTable(weights, tok, special, max_length, side.layout, str(side.path))


def idf_json_weights(path: Path, tokenizer, vocab_size: int) -> np.ndarray:
    """An OpenSearch ``idf.json`` (token -> weight) as a vocabulary-sized vector; unknown tokens weigh 0."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: unreadable token weights ({e})") from None
    if not isinstance(table, dict):
        raise ModelLoadError(f"{path}: expected a JSON object mapping tokens to weights")
    out = np.zeros(vocab_size, dtype=np.float32)
    unknown = 0
    for token, w in table.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            raise ModelLoadError(f"{path}: the weight of {token!r} is {w!r}, not a number")
        i = tokenizer.token_to_id(token)
        if i is None or i >= vocab_size:
            unknown += 1
            continue
        out[i] = w
    if unknown == len(table):
        raise ModelLoadError(f"{path}: none of its tokens is in the model's vocabulary")
    return out
