"""spladekit: learned sparse retrieval with SPLADE models (encode, index, search, evaluate, train, serve)."""

from __future__ import annotations

__version__ = "0.1.0"

from .encode import SpladeEncoder
from .errors import DataFormatError, InputError, ModelLoadError, SpladekitError
from .sparse import SparseVectors

__all__ = [
    "__version__",
    "SpladeEncoder",
    "SparseVectors",
    "SpladekitError",
    "InputError",
    "ModelLoadError",
    "DataFormatError",
]
