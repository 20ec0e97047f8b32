"""`SparseVectors`: a batch of sparse vectors in CSR form, the currency between encoder, index and evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


@dataclass
class SparseVectors:
    """A batch of sparse vectors: row i has term ids ``indices[indptr[i]:indptr[i+1]]`` and weights ``data[...]``.

    Term ids within a row are sorted ascending and unique. ``vocab`` (id -> token) lets rows be read as words.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    dim: int
    vocab: Sequence[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(self.indices, dtype=np.int32)
        self.data = np.ascontiguousarray(self.data, dtype=np.float32)
        if self.indptr.ndim != 1 or len(self.indptr) < 1 or self.indptr[0] != 0:
            raise InputError("indptr must be a 1-d array starting at 0")
        if self.indptr[-1] != len(self.indices) or len(self.indices) != len(self.data):
            raise InputError(
                f"indptr ends at {self.indptr[-1]} but there are {len(self.indices)} indices and {len(self.data)} weights"
            )
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.dim):
            raise InputError(f"term ids must lie in [0, {self.dim})")

    # ----------------------------------------------------------------- construction
    @classmethod
    def empty(cls, n: int, dim: int, vocab: Sequence[str] | None = None) -> SparseVectors:
        return cls(np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), dim, vocab)

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[Sequence[int], Sequence[float]]],
        dim: int,
        vocab: Sequence[str] | None = None,
    ) -> SparseVectors:
        """Build from (term ids, weights) pairs; duplicate ids in a row are summed, zeros dropped, ids sorted."""
        indptr = [0]
        all_idx: list[np.ndarray] = []
        all_val: list[np.ndarray] = []
        for r, (idx, val) in enumerate(rows):
            idx = np.asarray(idx, dtype=np.int64).ravel()
            val = np.asarray(val, dtype=np.float32).ravel()
            if len(idx) != len(val):
                raise InputError(f"row {r}: {len(idx)} term ids but {len(val)} weights")
            if len(idx) and (idx.min() < 0 or idx.max() >= dim):
                raise InputError(f"row {r}: term ids must lie in [0, {dim})")
            if not np.all(np.isfinite(val)):
                raise InputError(f"row {r}: weights must be finite numbers")
            uniq, inv = np.unique(idx, return_inverse=True)
            summed = np.zeros(len(uniq), np.float32)
            np.add.at(summed, inv, val)
            keep = summed != 0
            all_idx.append(uniq[keep].astype(np.int32))
            all_val.append(summed[keep])
            indptr.append(indptr[-1] + int(keep.sum()))
        indices = np.concatenate(all_idx) if all_idx else np.zeros(0, np.int32)
        data = np.concatenate(all_val) if all_val else np.zeros(0, np.float32)
        return cls(np.asarray(indptr, np.int64), indices, data, dim, vocab)

    @classmethod
    def from_sorted_rows(
        cls, rows: Sequence[tuple[np.ndarray, np.ndarray]], dim: int, vocab: Sequence[str] | None = None
    ) -> SparseVectors:
        """Build from rows an encoder made itself (int32 ids ascending and unique, float32 weights > 0): no
        re-checking, which costs more than a table query's whole encoding."""
        if len(rows) == 1:
            return cls(np.array([0, len(rows[0][0])], np.int64), rows[0][0], rows[0][1], dim, vocab)
        lengths = np.fromiter((len(i) for i, _ in rows), np.int64, len(rows))
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int32)
        data = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
        return cls(indptr, indices, data, dim, vocab)

    @classmethod
    def from_dicts(
        cls, dicts: Iterable[Mapping[str | int, float]], vocab: Sequence[str], dim: int | None = None
    ) -> SparseVectors:
        """Build from ``{token: weight}`` (or ``{term id: weight}``) dicts; unknown tokens are an error."""
        lookup = {t: i for i, t in enumerate(vocab)}
        dim = dim or len(vocab)
        rows = []
        for r, d in enumerate(dicts):
            if not isinstance(d, Mapping):
                raise InputError(f"row {r}: expected a {{token: weight}} mapping, got {type(d).__name__}")
            ids, vals = [], []
            for k, v in d.items():
                if isinstance(k, str):
                    if k not in lookup:
                        raise InputError(f"row {r}: token {k!r} is not in the model's vocabulary")
                    ids.append(lookup[k])
                else:
                    ids.append(int(k))
                vals.append(float(v))
            rows.append((ids, vals))
        return cls.from_rows(rows, dim, vocab)

    @classmethod
    def from_scipy(cls, matrix, vocab: Sequence[str] | None = None) -> SparseVectors:
        m = matrix.tocsr().copy()
        m.sum_duplicates()
        m.sort_indices()
        m.eliminate_zeros()
        return cls(m.indptr, m.indices, m.data, m.shape[1], vocab)

    @classmethod
    def coerce(cls, obj, what: str = "vectors") -> SparseVectors:
        """``obj`` as SparseVectors: SparseVectors as is, any scipy sparse matrix or array, or a torch sparse
        tensor (COO or CSR, 2-D); anything else is an InputError naming ``what``. Callers holding scipy or torch
        vectors need not know this class."""
        if isinstance(obj, cls):
            return obj
        if hasattr(obj, "tocsr") and hasattr(obj, "shape") and len(getattr(obj, "shape", ())) == 2:
            return cls.from_scipy(obj)
        layout = str(getattr(obj, "layout", ""))
        if layout in ("torch.sparse_coo", "torch.sparse_csr"):
            if obj.dim() != 2:
                raise InputError(
                    f"{what}: a torch sparse tensor must be 2-D (rows x vocabulary), got {obj.dim()}-D"
                )
            import scipy.sparse as sp

            t = obj.detach().cpu()
            if layout == "torch.sparse_coo":
                t = t.coalesce()
                rows, cols = t.indices().numpy()
                m = sp.coo_matrix((t.values().float().numpy(), (rows, cols)), shape=tuple(t.shape))
            else:
                m = sp.csr_matrix(
                    (t.values().float().numpy(), t.col_indices().numpy(), t.crow_indices().numpy()),
                    shape=tuple(t.shape),
                )
            return cls.from_scipy(m)
        raise InputError(
            f"{what} must be SparseVectors, a scipy sparse matrix or a torch sparse tensor, got {type(obj).__name__}"
        )

    @classmethod
    def from_dense(cls, dense: np.ndarray, vocab: Sequence[str] | None = None) -> SparseVectors:
        dense = np.atleast_2d(np.asarray(dense, dtype=np.float32))
        rows, cols = np.nonzero(dense)
        indptr = np.zeros(dense.shape[0] + 1, np.int64)
        np.add.at(indptr, rows + 1, 1)
        return cls(np.cumsum(indptr), cols, dense[rows, cols], dense.shape[1], vocab)

    @classmethod
    def concat(cls, parts: Sequence[SparseVectors]) -> SparseVectors:
        if not parts:
            raise InputError("concat needs at least one SparseVectors")
        dim = parts[0].dim
        if any(p.dim != dim for p in parts):
            raise InputError("cannot concatenate vectors of different dimensions")
        offsets = np.cumsum([0] + [p.nnz for p in parts])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(parts, offsets)])
        return cls(
            indptr,
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.data for p in parts]),
            dim,
            parts[0].vocab,
        )

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Term ids and weights of row ``i`` (views, not copies)."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {i} out of range for {n} vectors")
        s, e = self.indptr[i], self.indptr[i + 1]
        return self.indices[s:e], self.data[s:e]

    def __getitem__(self, key) -> SparseVectors:
        """Select rows by int, slice or index array; always returns a SparseVectors."""
        n = len(self)
        if isinstance(key, (int, np.integer)):
            key = [int(key) + n if key < 0 else int(key)]
        rows = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} vectors")
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        take = (
            np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(rows) else np.zeros(0, int)
        )
        return SparseVectors(indptr, self.indices[take], self.data[take], self.dim, self.vocab)

    def __iter__(self):
        for i in range(len(self)):
            yield self.row(i)

    # ----------------------------------------------------------------- conversions
    def to_scipy(self):
        """As a ``scipy.sparse.csr_matrix`` (shares memory with this object)."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(len(self), self.dim))

    def to_torch(self):
        """As a ``torch`` sparse CSR tensor."""
        import torch

        return torch.sparse_csr_tensor(
            torch.from_numpy(self.indptr),
            torch.from_numpy(self.indices.astype(np.int64)),
            torch.from_numpy(self.data),
            size=(len(self), self.dim),
            check_invariants=False,  # built from validated CSR arrays; skip torch's warning and its O(nnz) check
        )

    def to_dense(self) -> np.ndarray:
        return self.to_scipy().toarray()

    def _require_vocab(self) -> Sequence[str]:
        if self.vocab is None:
            raise InputError("these vectors carry no vocabulary; pass vocab= or use term ids")
        return self.vocab

    def to_dicts(self, use_tokens: bool = True) -> list[dict]:
        """One ``{token: weight}`` dict per row (``{term id: weight}`` with ``use_tokens=False``)."""
        vocab = self._require_vocab() if use_tokens else None
        out = []
        for idx, val in self:
            keys = [vocab[i] for i in idx] if vocab is not None else idx.tolist()
            out.append(dict(zip(keys, val.tolist())))
        return out

    def decode(self, top_k: int | None = None) -> list[list[tuple[str, float]]]:
        """Readable terms per row, highest weight first (all terms when ``top_k`` is None)."""
        vocab = self._require_vocab()
        out = []
        for idx, val in self:
            order = np.argsort(-val, kind="stable")
            if top_k is not None:
                order = order[:top_k]
            out.append([(vocab[idx[j]], float(val[j])) for j in order])
        return out

    # ----------------------------------------------------------------- pruning
    def prune(self, max_active_dims: int | None = None, threshold: float = 0.0) -> SparseVectors:
        """Drop weights ``<= threshold`` and keep at most ``max_active_dims`` highest weights per row."""
        rows = []
        for idx, val in self:
            keep = val > threshold
            idx, val = idx[keep], val[keep]
            if max_active_dims is not None and len(val) > max_active_dims:
                top = np.argpartition(-val, max_active_dims - 1)[:max_active_dims]
                top.sort()
                idx, val = idx[top], val[top]
            rows.append((idx, val))
        return SparseVectors.from_rows(rows, self.dim, self.vocab)

    # ----------------------------------------------------------------- statistics
    def active_dims(self) -> np.ndarray:
        """Number of non-zero terms per row."""
        return np.diff(self.indptr)

    def term_probabilities(self) -> np.ndarray:
        """Fraction of rows in which each term is active (the p_j of the SPLADE FLOPS estimate)."""
        counts = np.bincount(self.indices, minlength=self.dim).astype(np.float64)
        return counts / max(len(self), 1)

    def flops(self, other: SparseVectors | None = None) -> float:
        """Expected multiply-adds of a dot product between a row of ``self`` and a row of ``other``.

        Σ_j p_j(self)·p_j(other) as in Paria et al. / SPLADE; with no ``other``, the corpus against itself.
        """
        p = self.term_probabilities()
        q = p if other is None else other.term_probabilities()
        return float(np.dot(p, q))

    def stats(self) -> dict[str, float]:
        """Mean active dims, sparsity ratio (share of zero entries) and the FLOPS estimate."""
        ad = self.active_dims()
        mean = float(ad.mean()) if len(ad) else 0.0
        return {
            "rows": len(self),
            "mean_active_dims": mean,
            "max_active_dims": int(ad.max()) if len(ad) else 0,
            "sparsity": 1.0 - mean / self.dim,
            "flops": self.flops(),
        }

    def allclose(self, other: SparseVectors, atol: float = 1e-4) -> bool:
        """Same active terms in every row and weights within ``atol``."""
        if len(self) != len(other) or not np.array_equal(self.indptr, other.indptr):
            return False
        return bool(
            np.array_equal(self.indices, other.indices)
            and np.allclose(self.data, other.data, atol=atol, rtol=0)
        )


def max_merge(rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-term max of several sparse rows (term ids, weights): one document's vector from its windows or
    passages. One row comes back as it is."""
    if len(rows) == 1:
        return rows[0][0].astype(np.int32, copy=False), rows[0][1].astype(np.float32, copy=False)
    idx = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
    val = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    terms, inv = np.unique(idx, return_inverse=True)
    best = np.full(len(terms), -np.inf, np.float32)
    np.maximum.at(best, inv, val)
    return terms.astype(np.int32), best
