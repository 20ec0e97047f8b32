"""Teacher scale: the factor that puts teacher score margins on the student's dot-product scale for margin-MSE."""

from __future__ import annotations

import torch

from ..errors import InputError
from . import losses
from .batching import _Batcher, encode_rows, eval_mode, teacher_margins
from .config import TrainConfig
from .rows import TrainRow

SCALE_ROWS = 96  # rows whose margins fit teacher_scale ("auto" / "lsq")


@torch.no_grad()
def fit_teacher_scale(
    enc,
    batcher: _Batcher,
    rows: list[TrainRow],
    n_neg: int,
    cfg: TrainConfig,
    amp,
    screen,
    method: str = "auto",
) -> float:
    """Factor that puts teacher margins (e.g. cosine differences ~0.1) on the student's dot-product scale (~10).

    ``auto`` matches the spread: s = std(student margins) / std(teacher margins) on the first SCALE_ROWS rows.
    ``lsq`` is the least-squares fit min Σ(student − s·teacher)²; it shrinks by the student-teacher correlation
    (regression dilution: s = corr · σ_student / σ_teacher), so with a teacher that only partly agrees (r ≈ 0.5 on
    SciFact) margin-MSE then mostly asks the student to compress all its scores, which it does by dropping
    active terms, not by re-ranking (bench/train_scifact.md).
    """
    sample = rows[:SCALE_ROWS]
    q, d = encode_rows(enc, batcher, sample, n_neg, cfg, 64, amp, screen)
    s = losses.dot_scores(q, d.view(len(sample), 1 + n_neg, -1))
    student = losses.margins(s).flatten().double()
    teacher = teacher_margins(sample, n_neg, torch.float64).flatten()
    if method == "lsq":
        denom = float((teacher * teacher).sum())
        if denom == 0:
            raise InputError(
                "teacher_scale='lsq': every teacher margin is zero; set teacher_scale explicitly"
            )
        return float((student * teacher).sum() / denom)
    spread = float(teacher.std())
    if spread == 0:
        raise InputError("teacher_scale='auto': every teacher margin is equal; set teacher_scale explicitly")
    return float(student.std()) / spread


def resolve_teacher_scale(
    value: float | str,
    enc,
    batcher: _Batcher,
    rows: list[TrainRow],
    n_neg: int,
    cfg: TrainConfig,
    amp,
    screen,
    log,
) -> float:
    """The run's teacher scale: ``value`` as a number, fitted on the start model for 'auto' / 'lsq' (with the
    model in eval mode), and 1.0 when the loss uses no teacher scores (InfoNCE alone)."""
    if cfg.loss == "infonce":
        return 1.0
    if value in ("auto", "lsq"):
        with eval_mode(enc.mlm):
            fitted = fit_teacher_scale(enc, batcher, rows, n_neg, cfg, amp, screen, value)
        log(f"teacher_scale ({value}, fitted on the first {min(len(rows), SCALE_ROWS)} rows): {fitted:.3f}")
        return fitted
    return float(value)
