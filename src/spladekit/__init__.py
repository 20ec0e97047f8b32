"""spladekit: learned sparse retrieval with SPLADE models (encode, index, search, evaluate, train, serve)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import DataFormatError, InputError, ModelLoadError, SpladekitError
from .sparse import SparseVectors

if TYPE_CHECKING:  # pragma: no cover
    from .encode import SpladeEncoder
    from .index import Index

__all__ = [
    "__version__",
    "Index",
    "SpladeEncoder",
    "SparseVectors",
    "SpladekitError",
    "InputError",
    "ModelLoadError",
    "DataFormatError",
]


def __getattr__(name: str) -> Any:
    """Import torch/numba-backed parts on first use, so `import spladekit` (and the CLI's --help) stays fast."""
    if name == "SpladeEncoder":
        from .encode import SpladeEncoder

        return SpladeEncoder
    if name == "Index":
        from .index import Index

        return Index
    raise AttributeError(f"module 'spladekit' has no attribute {name!r}")
