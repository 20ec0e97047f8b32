"""The vector parity rule the encoder tests share: two encoders of one model give the same SPARSE vectors."""

from __future__ import annotations

import numpy as np

from spladekit.sparse import SparseVectors

ATOL = 1e-4  # float32 summation order differs between kernels (torch, numpy, onnxruntime; AVX2 and AVX-512)


def assert_parity(ours: SparseVectors, ref: SparseVectors, atol: float = ATOL) -> float:
    """|Δw| ≤ atol per term; active sets equal except terms below atol on either side. Returns the max |Δw|."""
    assert len(ours) == len(ref) and ours.dim == ref.dim
    a, b = ours.to_dense(), ref.to_dense()
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    assert diff <= atol, f"max |Δw| = {diff:.3g}"
    differ = (a > 0) != (b > 0)
    assert np.all(np.maximum(a, b)[differ] < atol), f"a term active on one side only has weight ≥ {atol}"
    return diff
