"""Encoding: model loading and SPLADE pooling.

``SpladeEncoder`` (torch + transformers) is imported on first use, so the light parts (``loading``, and the numpy
query encoder in ``lite``) load without torch: a cold ``spladekit search`` must not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import MODES, EncodeReport, Mode, Passages
from .loading import bundled_model_path, resolve_model
from .windows import STRATEGIES, LongDocs, check_long_docs

if TYPE_CHECKING:  # pragma: no cover
    from .encoder import SpladeEncoder, cpu_supports_bf16

__all__ = [
    "MODES",
    "Mode",
    "SpladeEncoder",
    "EncodeReport",
    "LongDocs",
    "Passages",
    "STRATEGIES",
    "check_long_docs",
    "bundled_model_path",
    "resolve_model",
    "cpu_supports_bf16",
]


def __getattr__(name: str) -> Any:
    if name in ("SpladeEncoder", "cpu_supports_bf16"):
        from . import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module 'spladekit.encode' has no attribute {name!r}")
