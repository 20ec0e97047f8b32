"""Scale-out: exporters for other engines, parquet shards and distributed encoding with Ray (the Qdrant backend
is an index backend: ``spladekit.index.qdrant``).

Imports are lazy so ``import spladekit.scale`` costs nothing until a feature is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "encode_with_ray",
    "export_jsonl",
    "export_opensearch",
    "export_qdrant",
    "index_shards",
    "read_shards",
    "write_shard",
    "write_shards",
]

_WHERE = {
    "encode_with_ray": "ray_encode",
    "export_jsonl": "export",
    "export_opensearch": "export",
    "export_qdrant": "export",
    "index_shards": "load",
    "read_shards": "shards",
    "write_shard": "shards",
    "write_shards": "shards",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
