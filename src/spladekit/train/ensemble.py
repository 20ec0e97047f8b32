"""Teacher ensembles: every scorer's scores of each row's candidates (the positive, then each negative), normalised
per row and combined with one weight per scorer into one teacher score per (query, document).

Scores are held as a ``ScoreTable``: per scorer a rows × candidates array, NaN past a row's last candidate (rows
may have different numbers of negatives). Normalisation is per row, over that row's candidates only:

- ``zscore``: (s − mean) / std (population std; a row whose scores are all equal becomes all 0),
- ``minmax``: (s − min) / (max − min) (all 0 when max = min),
- ``none``: the raw scores.

The ensemble score is Σ_k w_k · normalised_k. Only the ratios of the weights change a ranking; their scale is
absorbed by the trainer's ``teacher_scale = "auto"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .rows import TrainRow

NORMALISATIONS = ("zscore", "minmax", "none")


@dataclass
class ScoreTable:
    """Scores of each row's candidates by each scorer: ``scores[name]`` is rows × max candidates (NaN past a row's
    candidates, where ``mask`` is False); candidate 0 is the row's positive."""

    names: list[str]
    scores: dict[str, np.ndarray]
    mask: np.ndarray

    @classmethod
    def from_lists(cls, per_scorer: Mapping[str, Sequence[Sequence[float]]]) -> ScoreTable:
        """From ``{name: [[scores of row 0's candidates], ...]}``; every scorer must cover the same candidates."""
        names = list(per_scorer)
        if not names:
            raise InputError("a score table needs at least one scorer")
        lengths = [len(r) for r in per_scorer[names[0]]]
        width = max(lengths, default=0)
        mask = np.zeros((len(lengths), width), dtype=bool)
        for i, n in enumerate(lengths):
            mask[i, :n] = True
        scores = {}
        for name in names:
            rows = per_scorer[name]
            if [len(r) for r in rows] != lengths:
                raise InputError(f"scorer {name!r} scored other candidates than {names[0]!r}")
            a = np.full((len(lengths), width), np.nan)
            for i, r in enumerate(rows):
                a[i, : len(r)] = np.asarray(r, dtype=np.float64)
            if not np.isfinite(a[mask]).all():
                raise InputError(f"scorer {name!r} gave a score that is not a finite number")
            scores[name] = a
        return cls(names, scores, mask)

    def __len__(self) -> int:
        return self.mask.shape[0]

    def subset(self, rows: Sequence[int]) -> ScoreTable:
        """The table of the rows at ``rows`` (positions), in that order."""
        idx = np.asarray(list(rows), dtype=np.int64)
        return ScoreTable(list(self.names), {k: v[idx] for k, v in self.scores.items()}, self.mask[idx])

    def row_lists(self, matrix: np.ndarray) -> list[list[float]]:
        """Each row's candidate values of ``matrix`` (same shape as the table), pads dropped."""
        return [matrix[i, m].tolist() for i, m in enumerate(self.mask)]


def check_normalise(method: str) -> str:
    m = str(method).strip().lower()
    if m not in NORMALISATIONS:
        raise InputError(f"unknown normalisation {method!r}: use one of {', '.join(NORMALISATIONS)}")
    return m


def normalise(scores: np.ndarray, method: str) -> np.ndarray:
    """Per-row normalisation of a rows × candidates array (NaN pads stay NaN); see the module docstring."""
    method = check_normalise(method)
    s = np.asarray(scores, dtype=np.float64)
    if method == "none" or s.size == 0:
        return s.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "zscore":
            centre = np.nanmean(s, axis=1, keepdims=True)
            spread = np.nanstd(s, axis=1, keepdims=True)
        else:
            centre = np.nanmin(s, axis=1, keepdims=True)
            spread = np.nanmax(s, axis=1, keepdims=True) - centre
        out = (s - centre) / np.where(spread > 0, spread, 1.0)
    return np.where(np.isnan(s), np.nan, np.where(spread > 0, out, 0.0))


def check_weights(weights: Sequence[float] | None, names: Sequence[str]) -> np.ndarray:
    """One finite, non-negative weight per scorer, not all zero (None: 1 each)."""
    if weights is None:
        return np.ones(len(names))
    w = list(weights)
    if len(w) != len(names):
        raise InputError(
            f"{len(w)} weights for {len(names)} scorers ({', '.join(names)}): give one weight per scorer, in order"
        )
    for name, x in zip(names, w):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            raise InputError(f"weight of scorer {name!r} must be a finite number ≥ 0, got {x!r}")
    if not any(w):
        raise InputError("every weight is 0: at least one scorer must count")
    return np.asarray(w, dtype=np.float64)


def parse_weights(text: str, names: Sequence[str]) -> np.ndarray:
    """``"1,0.5,0.5"``: one weight per scorer, in the order the scorers were given."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"--weights {text!r}: expected comma-separated numbers, e.g. 1,0.5,0.5") from None
    return check_weights(values, names)


def combine(table: ScoreTable, weights: Sequence[float] | np.ndarray | None, method: str) -> np.ndarray:
    """The ensemble's rows × candidates scores: Σ_k w_k · normalise(scores_k) (NaN pads kept)."""
    w = check_weights(None if weights is None else [float(x) for x in weights], table.names)
    out = np.zeros(table.mask.shape)
    for name, wk in zip(table.names, w):
        if wk:
            out += wk * normalise(table.scores[name], method)
    return np.where(table.mask, out, np.nan)


def candidates(rows: Sequence[TrainRow]) -> tuple[list[str], list[str]]:
    """The (query, passage) pairs a teacher scores: each row's positive, then each of its negatives."""
    queries, passages = [], []
    for r in rows:
        for p in [r.positive, *r.negatives]:
            queries.append(r.query)
            passages.append(p)
    return queries, passages


def score_rows(
    rows: Sequence[TrainRow], scorers: Mapping[str, object], show_progress: bool = False, log=None
):
    """A ``ScoreTable`` of ``rows`` by each scorer (``{name: obj with .score(queries, passages)}``)."""
    queries, passages = candidates(rows)
    per: dict[str, list[list[float]]] = {}
    for name, scorer in scorers.items():
        if log is not None:
            log(f"scoring {len(queries)} (query, passage) pairs with {name}")
        flat = scorer.score(queries, passages, show_progress=show_progress)
        if len(flat) != len(queries):
            raise InputError(f"scorer {name!r} returned {len(flat)} scores for {len(queries)} pairs")
        split, pos = [], 0
        for r in rows:
            k = 1 + len(r.negatives)
            split.append([float(s) for s in flat[pos : pos + k]])
            pos += k
        per[name] = split
    return ScoreTable.from_lists(per)
