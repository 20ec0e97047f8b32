"""HTTP serving: a FastAPI app around an index (``create_app``), run by ``spladekit serve``."""

from .app import API_KEY_HEADER, Limits, create_app

__all__ = ["create_app", "Limits", "API_KEY_HEADER"]
