"""A run's state: what the loop updates step by step, and the resumable checkpoint that saves and restores it."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..encode import SpladeEncoder
from ..errors import InputError
from .batching import _Batcher
from .checkpoint import save_sparse_encoder, save_state
from .config import TrainConfig
from .rows import TrainRow


@dataclass
class RunState:
    """One training run: its set-up (config, rows, model, optimiser) and what each step and epoch end update."""

    cfg: TrainConfig
    log: Callable[[str], Any]
    t_start: float
    out_dir: Path
    rows: list[TrainRow]
    n_neg: int
    holdout: list[str] | None  # held-out query ids that judge the run, or None (eval_data's split does)
    enc: SpladeEncoder
    batcher: _Batcher
    device: torch.device
    amp: torch.dtype | None
    screen: bool
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any  # torch.amp.GradScaler: on for fp16 autocast, a pass-through otherwise
    steps_per_epoch: int
    teacher_scale: float | str
    resumed: bool = False
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_value: float = -math.inf
    eval_cache: dict = field(default_factory=dict)
    eval_seconds: float = 0.0  # evaluation time, excluded from the max_minutes training budget
    step_losses: list[float] = field(default_factory=list)
    step_log: list[dict] = field(default_factory=list)
    best_path: Path | None = None
    last_path: Path | None = None
    bar: Any = None

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    @property
    def reg_warmup(self) -> int:
        """Steps over which the FLOPS weights ramp up."""
        return max(1, int(self.total_steps * self.cfg.regularizer_warmup_ratio))

    def train_seconds(self) -> float:
        """Seconds since the start, evaluation excluded."""
        return time.perf_counter() - self.t_start - self.eval_seconds

    def checkpoint(self, name: str, epoch_done: int, metrics: dict | None) -> Path:
        """A resumable SparseEncoder folder ``out_dir/name``: weights, run info and ``trainer_state.pt`` (a Router
        folder with the query table when the run trains one; the optimiser state holds the table's moments)."""
        table = self.batcher.query_table
        path = save_sparse_encoder(
            self.enc,
            self.out_dir / name,
            query_table=table.to_query_table() if table is not None else None,
            extra={
                "config": asdict(self.cfg),
                "step": self.step,
                "metrics": metrics,
                "history": self.history,
            },
        )
        save_state(
            path,
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "history": self.history,
                "best_value": self.best_value,
                "teacher_scale": self.teacher_scale,
                "torch_rng": torch.get_rng_state(),
                "py_rng": random.getstate(),
                "total_steps": self.total_steps,
                "epoch_done": epoch_done,
            },
        )
        return path

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's ``trainer_state.pt``: optimiser, schedule, step, history, RNG states."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # checkpoints from before mixed-precision scaling have none
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.best_value = float(state["best_value"])
        self.teacher_scale = state["teacher_scale"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["py_rng"])
        if state["total_steps"] != self.total_steps:
            raise InputError(
                f"{self.cfg.resume_from}: checkpoint was made for {state['total_steps']} steps, this config "
                f"gives {self.total_steps} (same data, batch_size and epochs are needed to resume)"
            )
        self.resumed = True
        self.log(f"resuming from {self.cfg.resume_from} at step {self.step}")
