"""Loading a shards folder into an index (``spladekit index SHARDS -i IDX``): the shards' model must be the index's,
and passages go into a passages index (through ``PassageIndex.write_passages``), whole documents into any other.
Shards are written one at a time as upserts; a document's passages are always in one shard."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..encode.loading import check_same_model
from ..errors import InputError
from .shards import ShardBatch, iter_shard_batches, read_manifest, shards_long_docs


@dataclass
class ShardsLoaded:
    """What loading a shards folder did: documents new to the index, documents replaced, every document id."""

    added: int = 0
    updated: int = 0
    ids: list[str] = field(default_factory=list)


def check_shards_fit(idx, folder: str | Path) -> dict:
    """The one check before shards go into ``idx``: same model (weights), and passages shards only into a passages
    index and whole-document shards only into another; returns the manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_same_model(idx.model, manifest.get("model") or {}, str(folder), " (the shards' model)")
    have, want = shards_long_docs(manifest), idx.long_docs
    if (have.strategy == "passages") != (want.strategy == "passages"):
        if have.strategy == "passages":
            raise InputError(
                f"{folder}: the shards hold passages (encoded with long_docs {have.record()}), but {idx.path} "
                f"stores whole documents ({want.strategy}): load them into an index created with --long-docs "
                "passages (and the same --window/--stride)"
            )
        raise InputError(
            f"{folder}: the shards hold whole documents (long_docs {have.strategy}), but {idx.path} stores "
            "passages: encode with `spladekit encode --ray --long-docs passages` (same --window/--stride), or "
            "load them into an index that is not a passages index"
        )
    return manifest


def write_shard_batch(idx, batch: ShardBatch) -> list[str]:
    """Upsert one shard into ``idx`` (checked with ``check_shards_fit``); returns its document ids."""
    vectors = batch.vectors
    vectors.vocab = None  # the model was checked through the shards' manifest
    if batch.passages is None:
        idx.upsert_vectors(batch.ids, vectors, batch.texts, batch.metadata)
        return list(batch.ids)
    docs = batch.documents()
    idx.write_passages(
        docs.ids, vectors, docs.owner, docs.spans, docs.counts, docs.texts, docs.metadata, upsert=True
    )
    return docs.ids


def index_shards(idx, folder: str | Path) -> ShardsLoaded:
    """Upsert every finished shard of ``folder`` into ``idx``, shard by shard (no commit)."""
    check_shards_fit(idx, folder)
    done = ShardsLoaded()
    for batch in iter_shard_batches(folder):
        ids = batch.documents().ids
        there = idx._present(ids)  # pending writes included: a document of an earlier shard counts as there
        updated = sum(x in there for x in ids)
        done.updated += updated
        done.added += len(ids) - updated
        done.ids.extend(write_shard_batch(idx, batch))
    return done
