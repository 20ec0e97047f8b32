"""Training rows, checked: ``{"query", "positive", "negatives": [...], "scores": [pos, neg_1, ...]}`` or the model
card's ``{"query", "positive", "negative_1", …, "negative_n", "label": [margins]}``, from JSONL, parquet or a Hugging
Face dataset id."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import iter_jsonl
from ..errors import DataFormatError, InputError, first_line

if TYPE_CHECKING:
    from .config import TrainConfig

_NEGATIVE_COLUMN = re.compile(r"negative_(\d+)")
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".pq", ".gz", ".txt", ".tsv", ".csv")


@dataclass
class TrainRow:
    """One query with its positive, its hard negatives and (optionally) what a teacher says of them: absolute
    ``scores`` (positive, then each negative) or only ``margins`` (positive minus each negative, the card's
    ``label``). Every loss here needs differences only (``teacher_margins``), so either is enough."""

    query: str
    positive: str
    negatives: list[str]
    scores: list[float] | None = None
    extra: dict = field(default_factory=dict)
    margins: list[float] | None = None

    @property
    def has_teacher(self) -> bool:
        return self.scores is not None or self.margins is not None

    def teacher_margins(self, n: int) -> list[float] | None:
        """Teacher margins of the first ``n`` negatives (from the scores when the row has them), or None."""
        if self.scores is not None:
            return [self.scores[0] - s for s in self.scores[1 : 1 + n]]
        return None if self.margins is None else self.margins[:n]

    def to_json(self) -> dict:
        out = {"query": self.query, "positive": self.positive, "negatives": self.negatives}
        if self.scores is not None:
            out["scores"] = self.scores
        elif self.margins is not None:
            out["label"] = self.margins
        out.update(self.extra)
        return out


def _text(obj: dict, key: str, path: str, line: int) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        raise DataFormatError(path, line, f"'{key}' must be a non-empty string")
    return v


def _numbers(v, key: str, path: str, line: int) -> list[float]:
    if not isinstance(v, (list, tuple)) or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in v
    ):
        raise DataFormatError(path, line, f"'{key}' must be a list of finite numbers")
    return [float(s) for s in v]


def _negatives(obj: dict, path: str, line: int) -> tuple[list[str], set[str]]:
    """The row's negatives, from a ``negatives`` list or ``negative_1 … negative_n`` columns (the card's layout),
    and the keys they used."""
    # a parquet or dataset row has every column of its table: a null one is absent from this row
    numbered = sorted(
        (int(m.group(1)), k)
        for k, v in obj.items()
        if v is not None and (m := _NEGATIVE_COLUMN.fullmatch(k)) is not None
    )
    if obj.get("negatives") is not None and numbered:
        raise DataFormatError(path, line, "row has both 'negatives' and 'negative_N' columns: use one layout")
    if numbered:
        if [i for i, _ in numbered] != list(range(1, len(numbered) + 1)):
            raise DataFormatError(
                path, line, f"negative columns must be negative_1 … negative_{len(numbered)} with no gap"
            )
        keys = [k for _, k in numbered]
        for k in keys:
            _text(obj, k, path, line)
        return [obj[k] for k in keys], set(keys)
    negs = obj.get("negatives")
    if not isinstance(negs, list):
        raise DataFormatError(
            path, line, "'negatives' must be a list of strings (or give negative_1 … negative_n columns)"
        )
    if not negs:
        raise DataFormatError(path, line, "'negatives' is empty: each row needs at least one negative")
    for j, n in enumerate(negs):
        if not isinstance(n, str) or not n.strip():
            raise DataFormatError(path, line, f"negatives[{j}] must be a non-empty string")
    return [str(n) for n in negs], {"negatives"}


def parse_row(obj: dict, path: str, line: int, *, require_scores: bool) -> TrainRow:
    """Validate one training row (a JSONL object, a parquet or dataset row); every problem names the file and
    line (row). Two layouts: ``negatives`` + ``scores`` (positive's score, then each negative's), or the
    sentence-transformers / model-card one, ``negative_1 … negative_n`` + ``label``: n margins (positive minus
    each negative; a bare number when n = 1) or, as sentence-transformers also reads it, n + 1 scores.
    ``require_scores``: the row must carry teacher values of either kind."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, line, "expected a JSON object")
    query = _text(obj, "query", path, line)
    positive = _text(obj, "positive", path, line)
    negs, used = _negatives(obj, path, line)
    n = len(negs)
    if obj.get("scores") is not None and obj.get("label") is not None:
        raise DataFormatError(path, line, "row has both 'scores' and 'label': give one")
    scores = margins = None
    if obj.get("scores") is not None:
        scores = _numbers(obj["scores"], "scores", path, line)
        if len(scores) != n + 1:
            raise DataFormatError(
                path,
                line,
                f"'scores' has {len(scores)} values for 1 positive + {n} negatives "
                f"(expected {n + 1}: the positive's score, then each negative's)",
            )
    elif obj.get("label") is not None:
        label = obj["label"]
        values = _numbers([label] if isinstance(label, (int, float)) else label, "label", path, line)
        if len(values) == n + 1:
            scores = values
        elif len(values) == n:
            margins = values
        else:
            raise DataFormatError(
                path,
                line,
                f"'label' has {len(values)} values for {n} negatives (expected {n} margins, positive minus "
                f"each negative, or {n + 1} scores)",
            )
    elif require_scores:
        raise DataFormatError(
            path, line, "row has no 'scores' or 'label' (needed for distillation; run `spladekit teacher`)"
        )
    used |= {"query", "positive", "scores", "label", "negatives"}
    extra = {k: v for k, v in obj.items() if k not in used and not _NEGATIVE_COLUMN.fullmatch(k)}
    return TrainRow(query, positive, negs, scores, extra, margins)


def _row_objects(source: str | Path, split: str) -> Iterator[tuple[str, int, dict]]:
    """(where, line or row number, object) for each row of a JSONL or parquet file, or of a Hugging Face dataset
    id (``owner/name``, read with ``datasets`` when online)."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
            line = 0
            for batch in batches:
                for obj in batch.to_pylist():
                    line += 1
                    yield str(path), line, obj
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise DataFormatError(str(path), None, f"cannot read parquet ({first_line(e)})") from None
        return
    if path.exists() or not _looks_like_dataset_id(str(source)):
        for line, obj in iter_jsonl(path):
            yield str(path), line, obj
        return
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"{source}: not a local file; reading it as a Hugging Face dataset needs the datasets package "
            "(pip install datasets)"
        ) from None
    try:
        data = datasets.load_dataset(str(source), split=split)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, unknown split: one line naming the dataset
        raise InputError(
            f"{source}: cannot load Hugging Face dataset split {split!r} ({first_line(e)})"
        ) from None
    for i, obj in enumerate(data, start=1):
        yield f"{source}[{split}]", i, dict(obj)


def _looks_like_dataset_id(name: str) -> bool:
    """``owner/name`` that is not a missing data file's path (a typo in a file name must say "no such file")."""
    parts = name.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not name.startswith((".", "~"))
        and Path(name).suffix.lower() not in _FILE_SUFFIXES
    )


def read_rows(path: str | Path, *, require_scores: bool = False, split: str = "train") -> list[TrainRow]:
    """Read and validate training rows (all of them, so an error surfaces before training starts) from a JSONL or
    parquet file, or a Hugging Face dataset id (its ``split``)."""
    rows = [
        parse_row(obj, where, line, require_scores=require_scores)
        for where, line, obj in _row_objects(path, split)
    ]
    if not rows:
        raise InputError(f"{path}: no training rows")
    return rows


def prepare_rows(cfg: TrainConfig) -> tuple[list[TrainRow], int]:
    """A run's training rows (teacher scores or margins required unless the loss is InfoNCE alone) and the number
    of negatives each batch uses: ``num_negatives``, or the fewest any row has (said when rows disagree)."""
    rows = read_rows(cfg.train_data, require_scores=cfg.loss != "infonce", split=cfg.train_split)
    n = cfg.num_negatives or min(len(r.negatives) for r in rows)
    short = [i for i, r in enumerate(rows) if len(r.negatives) < n]
    if short:
        raise InputError(
            f"{cfg.train_data}: row {short[0] + 1} has {len(rows[short[0]].negatives)} negatives, fewer than "
            f"num_negatives={n}"
        )
    if cfg.num_negatives is None and len({len(r.negatives) for r in rows}) > 1:
        # rows disagree: use the smallest count so every batch is rectangular (said, not silent)
        print(f"note: rows have different numbers of negatives; using the first {n} of each")
    return rows, n


def write_rows(path: str | Path, rows: Iterable[TrainRow | dict]) -> int:
    """Write rows as JSONL atomically (temp file + rename, so an interrupted run never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r.to_json() if isinstance(r, TrainRow) else r, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
