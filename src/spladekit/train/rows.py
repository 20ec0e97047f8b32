"""Training rows: ``{"query", "positive", "negatives": [...], "scores": [pos, neg_1, ...]}`` JSONL, checked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import iter_jsonl
from ..errors import DataFormatError, InputError

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclass
class TrainRow:
    """One query with its positive, its hard negatives and (optionally) teacher scores for all of them."""

    query: str
    positive: str
    negatives: list[str]
    scores: list[float] | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"query": self.query, "positive": self.positive, "negatives": self.negatives}
        if self.scores is not None:
            out["scores"] = self.scores
        out.update(self.extra)
        return out


def _text(obj: dict, key: str, path: str, line: int) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        raise DataFormatError(path, line, f"'{key}' must be a non-empty string")
    return v


def parse_row(obj: dict, path: str, line: int, *, require_scores: bool) -> TrainRow:
    """Validate one decoded JSONL object; every problem names the file and line."""
    query = _text(obj, "query", path, line)
    positive = _text(obj, "positive", path, line)
    negs = obj.get("negatives")
    if not isinstance(negs, list):
        raise DataFormatError(path, line, "'negatives' must be a list of strings")
    if not negs:
        raise DataFormatError(path, line, "'negatives' is empty: each row needs at least one negative")
    for j, n in enumerate(negs):
        if not isinstance(n, str) or not n.strip():
            raise DataFormatError(path, line, f"negatives[{j}] must be a non-empty string")
    scores = obj.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores
        ):
            raise DataFormatError(path, line, "'scores' must be a list of numbers")
        if len(scores) != len(negs) + 1:
            raise DataFormatError(
                path,
                line,
                f"'scores' has {len(scores)} values for 1 positive + {len(negs)} negatives "
                f"(expected {len(negs) + 1}: the positive's score, then each negative's)",
            )
        scores = [float(s) for s in scores]
    elif require_scores:
        raise DataFormatError(
            path, line, "row has no 'scores' (needed for margin-MSE; run `spladekit teacher`)"
        )
    extra = {k: v for k, v in obj.items() if k not in ("query", "positive", "negatives", "scores")}
    return TrainRow(query, positive, [str(n) for n in negs], scores, extra)


def read_rows(path: str | Path, *, require_scores: bool = False) -> list[TrainRow]:
    """Read and validate a training JSONL file (all rows, so an error surfaces before training starts)."""
    rows = [parse_row(obj, str(path), line, require_scores=require_scores) for line, obj in iter_jsonl(path)]
    if not rows:
        raise InputError(f"{path}: no training rows")
    return rows


def prepare_rows(cfg: TrainConfig) -> tuple[list[TrainRow], int]:
    """A run's training rows (scores required unless the loss is InfoNCE alone) and the number of negatives each
    batch uses: ``num_negatives``, or the fewest any row has (said when rows disagree)."""
    rows = read_rows(cfg.train_data, require_scores=cfg.loss != "infonce")
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
