"""Exporters: hand spladekit vectors to other engines (Anserini / Seismic, Qdrant, OpenSearch neural sparse).

Every exporter reads an embedded index folder, a Qdrant index folder or a parquet shards folder
(``encode --ray``), batch by batch, and writes through a temp file that is renamed at the end, so an interrupted
export never leaves a truncated file that looks finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..encode.loading import model_source
from ..encode.windows import LongDocs
from ..errors import InputError
from ..index.base import backend_of
from ..io import atomic_writer
from .shards import (
    ShardBatch,
    is_shards_folder,
    iter_shard_batches,
    read_manifest,
    read_vocab,
    shards_long_docs,
)

FORMATS = ("jsonl", "qdrant", "opensearch")


# ----------------------------------------------------------------------------- sources
class Source:
    """What to export: batches of (ids, vectors, texts, metadata), the vocabulary and the model."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._index = None
        if is_shards_folder(self.path):
            self.kind = "shards"
            manifest = self._manifest = read_manifest(self.path)
            self.model: dict = manifest.get("model") or {}
            self.dim = int(manifest["dim"])
            vocab = read_vocab(self.path)
            if vocab is None:
                raise InputError(f"{self.path}: shards folder has no _vocab.json (needed for token names)")
            self.vocab: list[str] = vocab
        elif backend_of(self.path) is not None:
            from ..index import Index

            self._index = Index.open(self.path)
            self.kind = "qdrant" if self._index.backend == "qdrant" else "index"
            self.model = self._index.model
            self.dim = int(self._index.dim)
            self.vocab = list(self._index.vocab)
        else:
            raise InputError(
                f"{self.path}: not an index folder (manifest.json / qdrant.json) or a shards folder (_manifest.json)"
            )

    def batches(self) -> Iterator[ShardBatch]:
        """One row per document: passages (of shards, or of a passages index) merged by per-term max."""
        if self.kind == "shards":
            for batch in iter_shard_batches(self.path):
                yield batch.merged()
        else:  # embedded and Qdrant indexes both read back in batches
            yield from self._index.iter_documents()

    @property
    def long_docs(self) -> LongDocs:
        """How the exported document vectors were made: passages come out merged, as ``max`` over them."""
        ld = self._index.long_docs if self._index is not None else shards_long_docs(self._manifest)
        return LongDocs("max", ld.window, ld.stride) if ld.strategy == "passages" else ld

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


def _rows(batch: ShardBatch, vocab: list[str], quantize: float | None, token=None):
    """(id, text, metadata, {token: weight}) per document; ``quantize`` keeps round(weight * q) > 0 as ints."""
    for i, doc_id in enumerate(batch.ids):
        idx, val = batch.vectors.row(i)
        if quantize:
            q = np.rint(val.astype(np.float64) * quantize).astype(np.int64)
            keep = q > 0
            weights: list[Any] = q[keep].tolist()
            idx = idx[keep]
        else:
            weights = val.tolist()
        names = [vocab[t] for t in idx.tolist()] if token is None else [token(vocab[t]) for t in idx.tolist()]
        text = batch.texts[i] if batch.texts is not None else None
        meta = batch.metadata[i] if batch.metadata is not None else None
        yield doc_id, text, meta, dict(zip(names, weights))


# ----------------------------------------------------------------------------- JSONL (Anserini / Seismic)
def export_jsonl(source: str | Path, output: str | Path, *, quantize: float | None = None) -> int:
    """Anserini JsonVectorCollection / Seismic JSONL: ``{"id", "contents", "vector": {token: weight}}`` per line.

    ``quantize=100`` writes integer impacts round(100 * weight) as Anserini's ``-impact`` indexing expects.
    Returns the number of documents written.
    """
    src = Source(source)
    n = 0
    try:
        with atomic_writer(Path(output)) as f:
            for batch in src.batches():
                for doc_id, text, _meta, vec in _rows(batch, src.vocab, quantize):
                    f.write(
                        json.dumps({"id": doc_id, "contents": text or "", "vector": vec}, ensure_ascii=False)
                    )
                    f.write("\n")
                    n += 1
    finally:
        src.close()
    return n


# ----------------------------------------------------------------------------- Qdrant
def export_qdrant(
    source: str | Path,
    output: str | Path | None = None,
    *,
    url: str | None = None,
    collection: str | None = None,
    api_key: str | None = None,
    client=None,
    index_dir: str | Path | None = None,
) -> int:
    """Qdrant points: a JSONL ready for upload (``output``), or uploaded straight to ``url`` / ``client``.

    Each line is ``{"id": uuid5(doc id), "vector": {"splade": {"indices", "values"}}, "payload": {"_id", "text",
    "metadata"}}``, the layout `QdrantIndex` reads and writes. A direct upload also writes ``index_dir``
    (default: ``<source>.qdrant`` next to the source) so ``Index.open(index_dir)`` searches the collection.
    Returns the number of points.
    """
    from ..index.qdrant import QdrantIndex
    from ..index.qdrant_convert import VECTOR, point_id

    if (output is None) == (url is None and client is None):
        raise InputError("export to Qdrant needs exactly one of an output file or a url (--url) / client")
    src = Source(source)
    n = 0
    try:
        if output is not None:
            with atomic_writer(Path(output)) as f:
                for batch in src.batches():
                    for i, doc_id in enumerate(batch.ids):
                        idx, val = batch.vectors.row(i)
                        payload: dict[str, Any] = {"_id": doc_id}
                        if batch.texts is not None and batch.texts[i] is not None:
                            payload["text"] = batch.texts[i]
                        if batch.metadata is not None and batch.metadata[i] is not None:
                            payload["metadata"] = batch.metadata[i]
                        point = {
                            "id": point_id(doc_id),
                            "vector": {VECTOR: {"indices": idx.tolist(), "values": val.tolist()}},
                            "payload": payload,
                        }
                        f.write(json.dumps(point, ensure_ascii=False) + "\n")
                        n += 1
            return n
        src_path = Path(source).resolve()
        folder = Path(index_dir) if index_dir is not None else src_path.with_name(src_path.name + ".qdrant")
        target = QdrantIndex.create(
            folder,
            model_source(src.model),
            url=url,
            client=client,
            collection=collection,
            api_key=api_key,
            long_docs=src.long_docs,
        )
        try:
            for batch in src.batches():
                target.upsert_vectors(
                    batch.ids, _with_dim(batch.vectors, target.dim), batch.texts, batch.metadata
                )
                n += len(batch.ids)
        finally:
            target.close()
        return n
    finally:
        src.close()


def _with_dim(vectors, dim: int):
    if vectors.dim != dim:
        raise InputError(f"vectors have dimension {vectors.dim} but the model has {dim}")
    return vectors


# ----------------------------------------------------------------------------- OpenSearch
def opensearch_token(token: str) -> str:
    """A token name safe as a ``rank_features`` key: OpenSearch reads dots in field names as object paths."""
    return token.replace(".", "__dot__")


def export_opensearch(
    source: str | Path,
    output: str | Path,
    *,
    index_name: str = "spladekit",
    field: str = "passage_embedding",
    text_field: str = "passage_text",
    quantize: float | None = None,
) -> dict:
    """OpenSearch bulk NDJSON (``output``) plus ``<output stem>.mapping.json`` and ``<stem>.tokens.json``.

    The mapping declares ``field`` as ``rank_features`` (what OpenSearch neural sparse search queries); token
    names are made safe with :func:`opensearch_token` (``.`` -> ``__dot__``) and every renamed token is listed in
    the tokens file so queries (``neural_sparse`` ``query_tokens``) can apply the same renaming.
    Returns ``{"documents", "bulk", "mapping", "tokens"}``.
    """
    output = Path(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    mapping_path = output.with_name(stem + ".mapping.json")
    tokens_path = output.with_name(stem + ".tokens.json")
    src = Source(source)
    try:
        renamed = {t: opensearch_token(t) for t in src.vocab if opensearch_token(t) != t}
        safe_names = [opensearch_token(t) for t in src.vocab]
        if len(set(safe_names)) != len(safe_names):
            raise InputError("making token names OpenSearch-safe would merge two tokens of this vocabulary")
        n = 0
        with atomic_writer(output) as f:
            for batch in src.batches():
                for doc_id, text, meta, vec in _rows(batch, src.vocab, quantize, opensearch_token):
                    f.write(
                        json.dumps({"index": {"_index": index_name, "_id": doc_id}}, ensure_ascii=False)
                        + "\n"
                    )
                    doc: dict[str, Any] = {"id": doc_id, text_field: text or "", field: vec}
                    if meta is not None:
                        doc["metadata"] = meta
                    f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    n += 1
        mapping = {
            "settings": {"index": {"number_of_shards": 1}},
            "mappings": {
                "properties": {
                    "id": {"type": "keyword"},
                    text_field: {"type": "text"},
                    field: {"type": "rank_features"},
                    "metadata": {"type": "object", "dynamic": True},
                }
            },
        }
        with atomic_writer(mapping_path) as f:
            json.dump(mapping, f, indent=1)
        with atomic_writer(tokens_path) as f:
            json.dump(
                {"rule": "'.' -> '__dot__'", "renamed": renamed, "model": src.model.get("name")}, f, indent=1
            )
    finally:
        src.close()
    return {"documents": n, "bulk": str(output), "mapping": str(mapping_path), "tokens": str(tokens_path)}


def opensearch_query(vector: dict[str, float], field: str = "passage_embedding") -> dict:
    """A ``neural_sparse`` query body for a ``{token: weight}`` query vector (token names made safe)."""
    return {
        "query": {
            "neural_sparse": {field: {"query_tokens": {opensearch_token(t): w for t, w in vector.items()}}}
        }
    }


def export(source: str | Path, output: str | Path | None, fmt: str, **options) -> Any:
    """Dispatch on ``fmt`` (jsonl | qdrant | opensearch): what ``spladekit export`` calls."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        if output is None:
            raise InputError("--output is required for --format jsonl")
        return export_jsonl(source, output, quantize=options.get("quantize"))
    if fmt == "qdrant":
        return export_qdrant(
            source,
            output,
            url=options.get("url"),
            collection=options.get("collection"),
            api_key=options.get("api_key"),
        )
    if output is None:
        raise InputError("--output is required for --format opensearch")
    return export_opensearch(
        source, output, index_name=options.get("index_name") or "spladekit", quantize=options.get("quantize")
    )
