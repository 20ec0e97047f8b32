"""The training loop: SPLADE distillation (margin-MSE and/or listwise KL, + FLOPS) and/or in-batch contrastive
training.

``train`` sets a run up (``_setup``), runs its epochs step by step (``_run_epoch``, ``_train_step``) and at each
epoch end evaluates, checkpoints and keeps the best (``_end_epoch``). What those steps use lives beside it:
``batching`` (rows to differentiable vectors), ``teacher_scale``, ``holdout`` (evaluation), ``optim``,
``state`` (the run's state and resumable checkpoints), ``plots``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..encode import SpladeEncoder, cpu_supports_bf16
from ..encode.threads import torch_threads
from ..errors import InputError
from . import losses
from .batching import (
    _Batcher,
    autocast_dtype,
    encode_for_training,
    encode_rows,
    teacher_margins,
    training_device,
)
from .checkpoint import load_state, move_into_place, partial_path, write_json
from .config import TrainConfig
from .holdout import evaluate_checkpoint, judged_queries, split_holdout
from .optim import build_optimizer, build_scheduler
from .plots import plot_history
from .query_table import TrainableQueryTable, start_table
from .rows import TrainRow, prepare_rows
from .start_model import start_model
from .state import RunState
from .teacher_scale import SCALE_ROWS, fit_teacher_scale, resolve_teacher_scale

_prepare_rows = prepare_rows  # the name bench scripts used before rows.prepare_rows

# names that lived here before the split stay importable from here
__all__ = [
    "train", "TrainResult", "autocast_dtype", "encode_for_training", "fit_teacher_scale", "SCALE_ROWS",
    "split_holdout", "evaluate_checkpoint", "_Batcher", "_prepare_rows",
]  # fmt: skip


@dataclass
class TrainResult:
    """What a run produced: the best (or last) checkpoint, the per-epoch history and the step log."""

    output_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    step_log: list[dict] = field(default_factory=list)  # per step: each loss term, regulariser weights, dims


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _setup(cfg: TrainConfig, log, t_start: float) -> RunState:
    """Seed, rows (minus held-out queries), model, optimiser and schedule, resumed state, teacher scale."""
    device = training_device(cfg)
    _set_seed(cfg.seed)
    rows, n_neg = prepare_rows(cfg)
    holdout: list[str] | None = None
    if cfg.holdout_queries:
        rows, holdout = split_holdout(rows, cfg.holdout_queries, cfg.split_seed, judged_queries(cfg))
        log(f"held out {len(holdout)} training queries for evaluation; {len(rows)} rows left for training")
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if holdout:  # which queries judged the run (they are drawn with split_seed, not the training seed)
        (out_dir / "holdout_queries.json").write_text(json.dumps(holdout) + "\n")
    state = load_state(cfg.resume_from) if cfg.resume_from else None
    enc = SpladeEncoder.load(cfg.resume_from or start_model(cfg.model), mode="fp32")
    enc.mlm.to(device)
    table = start_table(cfg, enc, rows, state is not None, log)
    query_table = TrainableQueryTable(table, cfg.max_query_length).to(device) if table is not None else None
    if query_table is not None:
        log(
            f"query side: static table ({table.source}), learning rate "
            f"{cfg.query_table_learning_rate or cfg.learning_rate:g}; FLOPS on documents only "
            f"(query_regularizer_weight {cfg.query_regularizer_weight:g} is ignored)"
        )
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    optimizer = build_optimizer(cfg, enc.mlm, query_table)
    amp = autocast_dtype(cfg, device)
    run = RunState(
        cfg=cfg,
        log=log,
        t_start=t_start,
        out_dir=out_dir,
        rows=rows,
        n_neg=n_neg,
        holdout=holdout,
        enc=enc,
        batcher=_Batcher(enc, device, query_table),
        device=device,
        amp=amp,
        scaler=torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
        screen=device.type == "cpu" and cpu_supports_bf16(),
        optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer, steps_per_epoch * cfg.epochs),
        steps_per_epoch=steps_per_epoch,
        teacher_scale=cfg.teacher_scale,
    )
    if state is not None:
        run.restore(state)
    run.teacher_scale = resolve_teacher_scale(
        run.teacher_scale, enc, run.batcher, rows, n_neg, cfg, run.amp, run.screen, log
    )
    return run


def _micro_batches(batch: list[TrainRow], k: int) -> list[list[TrainRow]]:
    """``batch`` cut into ``k`` contiguous parts of near-equal size (empty parts dropped: a short last batch)."""
    bounds = [round(i * len(batch) / k) for i in range(k + 1)]
    return [batch[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _batch_loss(run: RunState, batch: list[TrainRow], wq: float, wd: float) -> tuple[torch.Tensor, dict]:
    """The loss of ``batch`` (differentiable) and its parts: each loss term, both FLOPS terms, active dims."""
    cfg = run.cfg
    q, d = encode_rows(run.enc, run.batcher, batch, run.n_neg, cfg, 256, run.amp, run.screen)
    d3 = d.view(len(batch), 1 + run.n_neg, -1)
    parts: dict[str, torch.Tensor] = {}
    if cfg.loss != "infonce":  # margins: every distillation loss sees score differences only
        t = teacher_margins(batch, run.n_neg, torch.float32, run.device) * run.teacher_scale
    if cfg.loss in ("margin_mse", "margin_mse+infonce", "margin_mse+kl"):
        parts["margin_mse"] = losses.margin_mse(q, d3, t)
    if cfg.loss in ("kl", "margin_mse+kl"):
        w = cfg.kl_weight if cfg.loss != "kl" else 1.0
        parts["kl"] = w * losses.distill_kl(q, d3, t, cfg.kl_temperature)
    if cfg.loss in ("infonce", "margin_mse+infonce"):
        w = cfg.infonce_weight if cfg.loss != "infonce" else 1.0
        parts["infonce"] = w * losses.info_nce(q, d3, cfg.infonce_scale)
    # a table query costs a lookup whatever its weights: FLOPS regularises documents only
    fq = losses.flops(q) if run.batcher.query_table is None else torch.zeros((), device=q.device)
    fd = losses.flops(d)
    loss = sum(parts.values()) + wq * fq + wd * fd
    if not torch.isfinite(loss):
        raise InputError(f"step {run.step}: loss is {loss.item()} (lower learning_rate or teacher_scale)")
    info = {k: float(v.detach()) for k, v in parts.items()}
    info.update(
        loss=float(loss.detach()),
        base=float(sum(parts.values()).detach()),
        flops_q=float(fq.detach()),
        flops_d=float(fd.detach()),
        q_dims=float((q.detach() > 0).sum(1).float().mean()),
        d_dims=float((d.detach() > 0).sum(1).float().mean()),
    )
    return loss, info


def _train_step(run: RunState, batch: list[TrainRow]) -> tuple[dict, list[str]]:
    """One optimiser step on ``batch`` (in ``gradient_accumulation`` micro-batches, each weighted by its share of
    the rows); returns the step's record and the names of its loss terms."""
    cfg = run.cfg
    table = run.batcher.query_table
    wq, wd = (
        losses.regularizer_weight(run.step, weight, run.reg_warmup, cfg.regularizer_schedule)
        for weight in (
            0.0 if table is not None else cfg.query_regularizer_weight,
            cfg.document_regularizer_weight,
        )
    )
    run.optimizer.zero_grad(set_to_none=True)
    rec: dict = {}
    for part in _micro_batches(batch, cfg.gradient_accumulation):
        share = len(part) / len(batch)
        loss, info = _batch_loss(run, part, wq, wd)
        run.scaler.scale(loss * share).backward()  # fp16 on a GPU: scaled so small gradients do not underflow
        for k, v in info.items():
            rec[k] = rec.get(k, 0.0) + share * v
    if cfg.max_grad_norm:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.enc.mlm.parameters(), cfg.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.step += 1
    terms = [k for k in ("margin_mse", "kl", "infonce") if k in rec]
    rec.update(
        step=run.step,
        w_q=wq,
        w_d=wd,
        lr=run.scheduler.get_last_lr()[0],
        **({"lr_table": run.scheduler.get_last_lr()[-1]} if table is not None else {}),
        # to the ms: step times are read from these (bench/train_speed.py)
        seconds=round(time.perf_counter() - run.t_start, 3),
        train_seconds=round(run.train_seconds(), 3),
    )
    return rec, terms


def _record_step(run: RunState, rec: dict, terms: list[str]) -> None:
    """Keep the step's record, append it to ``steps.jsonl`` and show it on the progress bar."""
    run.step_losses.append(rec["loss"])
    run.step_log.append(rec)
    with (run.out_dir / "steps.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")
    if run.bar is not None:
        post = {k: f"{rec[k]:.3g}" for k in terms}
        post.update({k: f"{rec[k]:.3g}" for k in ("flops_q", "flops_d")})
        post.update({k: f"{rec[k]:.0f}" for k in ("q_dims", "d_dims")})
        run.bar.set_postfix(post, refresh=False)
        run.bar.update(1)


def _run_epoch(run: RunState, epoch: int) -> bool:
    """The epoch's remaining steps (a resumed run skips those done); True when max_steps or max_minutes stop it."""
    cfg = run.cfg
    order = torch.randperm(len(run.rows), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
    run.enc.mlm.train(cfg.dropout)
    for b in range(max(run.step - epoch * run.steps_per_epoch, 0), run.steps_per_epoch):
        batch = [run.rows[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
        _record_step(run, *_train_step(run, batch))
        if cfg.save_every_steps and run.step % cfg.save_every_steps == 0 and b + 1 < run.steps_per_epoch:
            run.last_path = run.checkpoint("last", epoch, None)
        if cfg.max_steps is not None and run.step >= cfg.max_steps:
            return True
        if cfg.max_minutes is not None and run.train_seconds() > cfg.max_minutes * 60:
            run.log(f"time budget of {cfg.max_minutes} min reached at step {run.step}: stopping")
            return True
    return False


def _evaluate(run: RunState, epoch: float) -> dict:
    """``evaluate_checkpoint`` on the current model, timed (the time is not charged to max_minutes) and logged."""
    t0 = time.perf_counter()
    table = run.batcher.query_table
    qt = table.to_query_table() if table is not None else None
    m = evaluate_checkpoint(run.enc, run.cfg, run.eval_cache, run.holdout, query_table=qt)
    took = time.perf_counter() - t0
    run.eval_seconds += took
    m.update(epoch=epoch, step=run.step, eval_seconds=round(took, 1))
    run.log(
        f"epoch {epoch}: {run.cfg.metric} {m.get(run.cfg.metric, float('nan')):.4f}  "
        f"query dims {m['query_active_dims']:.1f}  doc dims {m['doc_active_dims']:.1f}  "
        f"({m['eval_seconds']} s)"
    )
    return m


def _end_epoch(run: RunState, epoch: int, stop: bool) -> bool:
    """Evaluate, checkpoint and keep the best after an epoch (or a stop); True when the run ends here."""
    cfg = run.cfg
    mid_epoch = stop and (run.step % run.steps_per_epoch) != 0
    if mid_epoch and cfg.max_steps is not None and run.step >= cfg.max_steps:
        run.last_path = run.checkpoint(
            "last", epoch, None
        )  # a deliberate short run: resumable, not evaluated
        return True
    # an epoch end, or a time-budget stop (evaluated too, as a fractional epoch, so its model can be kept)
    done = round(run.step / run.steps_per_epoch, 3) if mid_epoch else epoch + 1
    metrics = _evaluate(run, done) if cfg.eval_data else {"epoch": done, "step": run.step}
    metrics["train_loss"] = (
        float(np.mean(run.step_losses[-run.steps_per_epoch :])) if run.step_losses else None
    )
    metrics["train_seconds"] = round(run.train_seconds(), 1)
    run.history.append(metrics)
    value = metrics.get(cfg.metric)
    improved = value is not None and value > run.best_value
    if improved:
        run.best_value = value
    run.last_path = run.checkpoint(
        "last" if mid_epoch else f"epoch-{epoch + 1}", epoch if mid_epoch else epoch + 1, metrics
    )
    if cfg.keep_best and (improved or not cfg.eval_data):
        tmp = partial_path(run.out_dir / "best")
        shutil.copytree(run.last_path, tmp)
        run.best_path = move_into_place(tmp, run.out_dir / "best")
    write_json(run.out_dir / "history.json", run.history)
    if cfg.eval_data:
        plot_history(run.history, cfg.metric, run.out_dir / "curve.png")
    return stop


def train(config: TrainConfig | dict, *, show_progress: bool = True, log=print) -> TrainResult:
    """Train a SPLADE model as ``config`` says; returns where the checkpoints are and the per-epoch history.

    Checkpoints (``epoch-N/``, ``best/``) are SparseEncoder folders with a ``trainer_state.pt`` for resuming.
    """
    from .config import config_from_dict

    cfg = config_from_dict(config) if isinstance(config, dict) else config
    cfg.validate()
    t_start = time.perf_counter()
    with torch_threads(cfg.threads or None):  # the run's thread count, restored afterwards
        run = _setup(cfg, log, t_start)
        if cfg.eval_data and cfg.eval_at_start and not run.resumed:
            run.history.append(_evaluate(run, 0))
        if show_progress:
            from tqdm.auto import tqdm

            run.bar = tqdm(
                total=run.total_steps, initial=run.step, desc="training", unit="step", dynamic_ncols=True
            )
        if run.resumed and (run.out_dir / "best").is_dir():
            run.best_path = run.out_dir / "best"
        try:
            for epoch in range(run.step // run.steps_per_epoch, cfg.epochs):
                if _end_epoch(run, epoch, _run_epoch(run, epoch)):
                    break
        finally:
            if run.bar is not None:
                run.bar.close()
        run.enc.mlm.eval()
        write_json(run.out_dir / "history.json", run.history)
    return TrainResult(
        output_dir=run.out_dir,
        best_checkpoint=run.best_path,
        last_checkpoint=run.last_path,
        history=run.history,
        steps=run.step,
        seconds=time.perf_counter() - t_start,
        losses=run.step_losses,
        step_log=run.step_log,
    )
