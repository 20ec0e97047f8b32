"""Slices of a corpus for distributed encoding: the shard plan (byte offsets for JSONL, row ranges for parquet)
and reading one slice back on a worker, with the record rules of ``spladekit.data.parse_record``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import parse_json_line, parse_record
from ..errors import DataFormatError, InputError

DEFAULT_SHARD_SIZE = 10_000


@dataclass
class ShardPlan:
    """One unit of work: records ``start .. start+rows`` of the input (JSONL: from byte ``offset``, line ``line``)."""

    number: int
    start: int
    rows: int
    offset: int = 0
    line: int = 1


# ----------------------------------------------------------------------------- input planning
def resolve_input(path: Path) -> tuple[Path, str]:
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            path = path / "corpus.jsonl"
        else:
            raise InputError(
                f"{path}: folder has no corpus.jsonl (expected a JSONL or parquet file, or a BEIR folder)"
            )
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a JSONL or parquet file, or a BEIR folder)")
    fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "jsonl"
    return path, fmt


def plan_shards(path: Path, fmt: str, shard_size: int) -> list[ShardPlan]:
    """Split the input into shards; for JSONL one pass over the bytes finds where each shard starts."""
    if shard_size < 1:
        raise InputError("shard_size must be at least 1")
    plans: list[ShardPlan] = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            total = pq.ParquetFile(path).metadata.num_rows
        except Exception as e:  # noqa: BLE001
            raise DataFormatError(
                str(path), None, f"cannot read parquet ({str(e).splitlines()[0]})"
            ) from None
        for number, start in enumerate(range(0, total, shard_size)):
            plans.append(ShardPlan(number, start, min(shard_size, total - start)))
        return plans
    count = 0
    offset = 0
    current: ShardPlan | None = None
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                if count % shard_size == 0:
                    current = ShardPlan(len(plans), count, 0, offset, lineno)
                    plans.append(current)
                assert current is not None
                current.rows += 1
                count += 1
            offset += len(line)
    return plans


def _record(obj: Any, path: str, lineno: int | None, kind: str) -> tuple[str, str, dict | None]:
    """(id, full text, metadata) of one input object (rules: ``spladekit.data.parse_record``)."""
    r = parse_record(obj, path, lineno, kind)
    return r.id, r.full_text, r.metadata


def read_slice(
    path: Path, fmt: str, plan: ShardPlan, kind: str = "document"
) -> list[tuple[str, str, dict | None]]:
    """The records of one shard, read straight from the input (workers call this)."""
    out: list[tuple[str, str, dict | None]] = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        groups, first = [], None
        seen = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if seen + n > plan.start and seen < plan.start + plan.rows:
                groups.append(g)
                first = seen if first is None else first
            seen += n
        table = pf.read_row_groups(groups).slice(plan.start - (first or 0), plan.rows)
        for i, obj in enumerate(table.to_pylist()):
            out.append(_record(obj, f"{path} (row {plan.start + i})", None, kind))
        return out
    with path.open("rb") as f:
        f.seek(plan.offset)
        lineno = plan.line
        while len(out) < plan.rows:
            line = f.readline()
            if not line:
                raise DataFormatError(str(path), lineno, "file ended early (was it changed during encoding?)")
            if line.strip():
                out.append(_record(parse_json_line(line, str(path), lineno), str(path), lineno, kind))
            lineno += 1
    return out
