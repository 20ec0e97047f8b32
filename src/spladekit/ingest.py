"""Keep an index in sync with a source (``spladekit index SOURCE``): new documents are added, changed ones
re-encoded, unchanged ones skipped, and documents whose file or record is gone removed; bad items are skipped
and reported instead of stopping the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .data import Record
from .errors import DataFormatError, InputError
from .sources import iter_source_records, source_kind


@dataclass
class IngestReport:
    """What one sync did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    kept_missing: int = 0  # documents not in the source that were kept (--keep-missing, or unreadable items)
    truncated: int = 0  # texts longer than the model's max length (only the first tokens count)
    windowed: int = 0  # texts longer than one window (encoded as max over windows, or as passages)
    skipped: list[DataFormatError] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "kept_missing": self.kept_missing,
            "truncated": self.truncated,
            "windowed": self.windowed,
            "skipped": [{"path": e.path, "line": e.line, "problem": e.problem} for e in self.skipped],
        }


def check_source(source: str | Path) -> None:
    """Read the whole source once, raising at its first bad item (``--strict``), before any model is loaded."""
    p = Path(source)
    if source_kind(p) == "shards":
        return
    seen: set[str] = set()
    for r in iter_source_records(p):
        if r.id in seen:
            raise InputError(f"{p}: duplicate document id {r.id!r}")
        seen.add(r.id)


def index_source(
    idx,
    source: str | Path,
    *,
    batch_size: int = 32,
    chunk: int = 2048,
    show_progress: bool = False,
    keep_missing: bool = False,
    strict: bool = False,
) -> IngestReport:
    """Sync ``source`` into ``idx`` and commit once at the end (so the change is all-or-nothing).

    Unreadable files and malformed records are skipped and listed in the report (``strict=True`` raises at the
    first instead). Documents of the index that the source no longer has are deleted unless ``keep_missing``;
    when an unreadable item's id is unknown (a malformed JSONL line), nothing is deleted, since that item may be
    one of them.
    """
    p = Path(source)
    report = IngestReport()
    seen: set[str] = set()
    unknown_skips = 0

    def skip(e: DataFormatError) -> None:
        nonlocal unknown_skips
        if strict:
            raise e
        report.skipped.append(e)
        if e.doc_id is None:
            unknown_skips += 1
        else:
            seen.add(e.doc_id)  # unreadable now, but still in the source: never deleted for it

    if source_kind(p) == "shards":
        _index_shards(idx, p, report, seen)
    else:
        batch: list[Record] = []
        for r in iter_source_records(p, on_error=skip):
            if r.id in seen:
                skip(DataFormatError(str(p), None, f"duplicate document id {r.id!r} (first one kept)"))
                continue
            seen.add(r.id)
            batch.append(r)
            if len(batch) >= chunk:
                _sync_batch(idx, batch, report, batch_size, show_progress)
                batch = []
        _sync_batch(idx, batch, report, batch_size, show_progress)
    missing = [x for x in idx.ids() if x not in seen]
    if missing and not keep_missing and unknown_skips == 0:
        idx.delete(missing)
        report.removed = len(missing)
    else:
        report.kept_missing = len(missing)
    idx.commit()
    return report


def _sync_batch(idx, batch: list[Record], report: IngestReport, batch_size: int, show_progress: bool) -> None:
    new, changed = [], []
    for r in batch:
        old = idx.get(r.id)
        if old is None:
            new.append(r)
        elif old["text"] != r.full_text or old["metadata"] != r.metadata:
            changed.append(r)
        else:
            report.unchanged += 1
    todo = new + changed
    if todo:
        idx.upsert(
            [r.id for r in todo],
            [r.full_text for r in todo],
            [r.metadata for r in todo],
            batch_size=batch_size,
            show_progress=show_progress,
        )
        report.truncated += idx.encoder.last_report.truncated
        report.windowed += idx.encoder.last_report.windowed
    report.added += len(new)
    report.updated += len(changed)


def _index_shards(idx, folder: Path, report: IngestReport, seen: set[str]) -> None:
    from .scale.load import index_shards

    done = index_shards(idx, folder)  # same model, and passages shards only into a passages index (and back)
    report.added += done.added
    report.updated += done.updated
    seen.update(done.ids)
