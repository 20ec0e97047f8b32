"""Encoding: model loading and SPLADE pooling."""

from .encoder import EncodeReport, SpladeEncoder, cpu_supports_bf16
from .loading import bundled_model_path, resolve_model

__all__ = ["SpladeEncoder", "EncodeReport", "bundled_model_path", "resolve_model", "cpu_supports_bf16"]
