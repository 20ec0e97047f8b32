"""What ``spladekit index SOURCE`` reads: BEIR folders, JSONL files, folders of text files, parquet shards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..data import Record, read_records
from ..errors import DataFormatError, InputError

TEXT_SUFFIXES = (".txt", ".md")


def source_kind(source: str | Path) -> str:
    """``beir`` | ``jsonl`` | ``shards`` | ``files``, or an InputError naming what was expected."""
    p = Path(source)
    if p.is_file():
        if p.suffix in (".jsonl", ".json"):
            return "jsonl"
        raise InputError(
            f"{p}: expected a .jsonl file, a BEIR folder, a folder of .txt/.md files or parquet shards"
        )
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder")
    if (p / "corpus.jsonl").is_file():
        return "beir"
    if (p / "_manifest.json").is_file() and any(p.glob("*.parquet")):
        return "shards"
    return "files"


def iter_text_files(folder: Path) -> Iterator[Record]:
    """Every .txt/.md file under ``folder`` (sorted); id = path relative to the folder."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no corpus.jsonl, parquet shards or .txt/.md files found")
    for f in files:
        rel = f.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in f.relative_to(folder).parts):
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataFormatError(str(f), None, "not UTF-8 text") from None
        yield Record(rel, text.strip(), "", {"path": rel, "type": f.suffix.lower().lstrip(".")})


def iter_records(source: str | Path) -> Iterator[Record]:
    """Documents of a text source (not shards) in source order."""
    p = Path(source)
    kind = source_kind(p)
    if kind == "jsonl":
        return read_records(p)
    if kind == "beir":
        return read_records(p / "corpus.jsonl")
    if kind == "files":
        return iter_text_files(p)
    raise InputError(f"{p}: parquet shards carry vectors, not records")


def shard_model(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "_manifest.json").read_text()).get("model")
    except (OSError, json.JSONDecodeError) as e:
        raise DataFormatError(
            str(folder / "_manifest.json"), None, f"unreadable shard manifest ({e})"
        ) from None


def index_source(
    idx, source: str | Path, *, batch_size: int = 32, chunk: int = 2048, show_progress: bool = False
):
    """Add every document of ``source`` to ``idx``; documents whose text and metadata are unchanged are skipped,
    changed ones replaced, new ones added. Commits once at the end. Returns counts."""
    p = Path(source)
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    if source_kind(p) == "shards":
        _index_shards(idx, p, counts)
        idx.commit()
        return counts
    seen: set[str] = set()
    batch: list[Record] = []

    def flush() -> None:
        new, changed = [], []
        for r in batch:
            old = idx.get(r.id)
            if old is None:
                new.append(r)
            elif old["text"] != r.full_text or old["metadata"] != r.metadata:
                changed.append(r)
            else:
                counts["unchanged"] += 1
        todo = new + changed
        if todo:
            idx.upsert(
                [r.id for r in todo],
                [r.full_text for r in todo],
                [r.metadata for r in todo],
                batch_size=batch_size,
                show_progress=show_progress,
            )
        counts["added"] += len(new)
        counts["updated"] += len(changed)
        batch.clear()

    for r in iter_records(p):
        if r.id in seen:
            raise InputError(f"{p}: duplicate document id {r.id!r}")
        seen.add(r.id)
        batch.append(r)
        if len(batch) >= chunk:
            flush()
    flush()
    idx.commit()
    return counts


def _index_shards(idx, folder: Path, counts: dict) -> None:
    model = shard_model(folder)
    if (
        model
        and model.get("weights_sha256")
        and model.get("weights_sha256") != idx.model.get("weights_sha256")
    ):
        raise InputError(
            f"{folder}: shards were encoded by {model.get('name')}, but the index uses {idx.model.get('name')}"
        )
    try:
        from ..scale.shards import iter_shard_batches
    except ImportError as e:  # pragma: no cover - the scale area is part of the package
        raise InputError(f"reading parquet shards needs spladekit.scale.shards ({e})") from None
    for batch in iter_shard_batches(folder):
        vectors = batch.vectors
        vectors.vocab = None  # checked through the shard manifest's model above
        exists = [x in idx for x in batch.ids]
        counts["updated"] += sum(exists)
        counts["added"] += len(exists) - sum(exists)
        idx.upsert_vectors(batch.ids, vectors, batch.texts, batch.metadata)
