"""HTTP serving: a FastAPI app around an index (``create_app``), run by ``spladekit serve``."""

from .app import create_app
from .batching import QueryBatcher
from .limits import Limits
from .middleware import API_KEY_HEADER

__all__ = ["create_app", "Limits", "API_KEY_HEADER", "QueryBatcher"]
