"""The training loop: SPLADE distillation (margin-MSE + FLOPS) and/or in-batch contrastive training."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..encode import SpladeEncoder, cpu_supports_bf16
from ..errors import InputError
from . import losses
from .checkpoint import load_state, save_sparse_encoder, save_state
from .config import TrainConfig
from .pooling import splade_max_pool
from .rows import TrainRow, read_rows


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


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the transformer: 'auto' = fp16 on GPU, fp32 on CPU.

    On CPU the costly part, the vocabulary head, already runs its screening pass in bf16 where the CPU has bf16
    dot products (see ``pooling.screened_active_argmax``); bf16 autocast of the small transformer measured
    slower than fp32 on a 2-core AVX512-BF16 CPU without AMX (bench/train_scifact.md), so 'auto' leaves it off.
    """
    p = cfg.precision
    if p == "fp32":
        return None
    if p == "auto":
        return torch.float16 if device.type == "cuda" else None
    return torch.bfloat16 if p == "bf16" else torch.float16


class _Batcher:
    """Tokenises texts the way the encoder does (prompt, lower-casing) with a training max length."""

    def __init__(self, enc: SpladeEncoder, device: torch.device) -> None:
        self.enc = enc
        self.device = device

    def __call__(self, texts: list[str], kind: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        prompt = self.enc.spec.prompts.get(kind, "")
        texts = [prompt + t for t in texts]
        if self.enc.spec.do_lower_case:
            texts = [t.lower() for t in texts]
        tok = self.enc.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)


def encode_for_training(
    enc: SpladeEncoder,
    batcher: _Batcher,
    texts: list[str],
    kind: str,
    max_length: int,
    micro_batch: int,
    amp: torch.dtype | None,
    screen: bool,
) -> torch.Tensor:
    """Differentiable SPLADE vectors (len(texts), V). Texts run in length-sorted micro-batches (less padding)."""
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    parts: list[torch.Tensor] = []
    for s in range(0, len(order), micro_batch):
        idx = order[s : s + micro_batch]
        ids, mask = batcher([texts[i] for i in idx], kind, max_length)
        with torch.autocast(ids.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            hidden = enc.hidden_states(ids, mask)
        parts.append(
            splade_max_pool(
                hidden.float(), mask, enc.head_weight, enc.head_bias, enc.spec.activation, screen=screen
            )
        )
    out = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return out[inverse.to(out.device)]


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _prepare_rows(cfg: TrainConfig) -> tuple[list[TrainRow], int]:
    needs_scores = cfg.loss != "infonce"
    rows = read_rows(cfg.train_data, require_scores=needs_scores)
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


def _scheduler(cfg: TrainConfig, optimizer, total_steps: int):
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    if cfg.scheduler == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    if cfg.scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return get_constant_schedule_with_warmup(optimizer, warmup)


SCALE_ROWS = 96  # rows whose margins fit teacher_scale ("auto" / "lsq")


@torch.no_grad()
def fit_teacher_scale(
    enc, batcher, rows: list[TrainRow], n_neg: int, cfg: TrainConfig, amp, screen, method: str = "auto"
) -> float:
    """Factor that puts teacher margins (e.g. cosine differences ~0.1) on the student's dot-product scale (~10).

    ``auto`` matches the spread: s = std(student margins) / std(teacher margins) on the first SCALE_ROWS rows.
    ``lsq`` is the least-squares fit min Σ(student − s·teacher)²; it shrinks by the student-teacher correlation
    (regression dilution: s = corr · σ_student / σ_teacher), so with a teacher that only partly agrees (r ≈ 0.5 on
    SciFact) margin-MSE then mostly asks the student to compress all its scores, which it does by dropping
    active terms, not by re-ranking (bench/train_scifact.md).
    """
    sample = rows[:SCALE_ROWS]
    q = encode_for_training(
        enc, batcher, [r.query for r in sample], "query", cfg.max_query_length, 64, amp, screen
    )
    docs = [t for r in sample for t in [r.positive, *r.negatives[:n_neg]]]
    d = encode_for_training(
        enc, batcher, docs, "document", cfg.max_doc_length, cfg.doc_micro_batch, amp, screen
    )
    s = losses.dot_scores(q, d.view(len(sample), 1 + n_neg, -1))
    student = (s[:, :1] - s[:, 1:]).flatten().double()
    t = torch.tensor([r.scores[: 1 + n_neg] for r in sample], dtype=torch.float64)
    teacher = (t[:, :1] - t[:, 1:]).flatten()
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


def split_holdout(rows: list[TrainRow], n: int, seed: int) -> tuple[list[TrainRow], list[str]]:
    """Move every row of ``n`` randomly chosen queries (seeded) out of training; returns (rows, their query ids).

    Queries are identified by the row's ``query_id`` (written by ``spladekit mine``) or else by the query text.
    """
    key = [str(r.extra.get("query_id", r.query)) for r in rows]
    uniq = list(dict.fromkeys(key))
    if n >= len(uniq):
        raise InputError(f"holdout_queries={n}: the training data has only {len(uniq)} queries")
    held = set(random.Random(seed).sample(uniq, n))
    return [r for r, k in zip(rows, key) if k not in held], [k for k in uniq if k in held]


def evaluate_checkpoint(
    enc: SpladeEncoder, cfg: TrainConfig, _cache: dict | None = None, query_ids: list[str] | None = None
) -> dict:
    """nDCG@10 etc. and active dims on ``cfg.eval_data`` (exact brute-force retrieval).

    With ``eval_corpus_sample`` the corpus is the split's judged documents plus that many other documents
    (seeded): a cheaper, optimistic but epoch-to-epoch comparable curve; the final figure should come from
    ``spladekit eval`` on the full corpus. ``query_ids`` (held-out training queries) replaces the split's
    queries; they are then judged by ``cfg.holdout_split``'s qrels.
    """
    from ..data import load_beir
    from ..eval import compute_metrics, exact_search

    cache = _cache if _cache is not None else {}
    if "col" not in cache:
        col = load_beir(cfg.eval_data, cfg.holdout_split if query_ids else cfg.eval_split)
        if query_ids:
            by_text = {q.text: qid for qid, q in col.queries.items()}
            wanted = [q if q in col.qrels else by_text.get(q, q) for q in query_ids]
            missing = [q for q in wanted if q not in col.qrels]
            if missing:
                raise InputError(
                    f"holdout query {missing[0]!r} has no judgements in {col.qrels_path} "
                    "(holdout_split must be the split the training rows were mined from)"
                )
            col.qrels = {q: col.qrels[q] for q in wanted}
        ids = list(col.corpus)
        if cfg.eval_corpus_sample is not None:
            judged = {d for docs in col.qrels.values() for d in docs}
            others = [i for i in ids if i not in judged]
            rng = random.Random(cfg.split_seed)
            keep = judged | set(rng.sample(others, min(cfg.eval_corpus_sample, len(others))))
            ids = [i for i in ids if i in keep]
        qids = list(col.qrels)
        cache.update(
            col=col,
            ids=ids,
            qids=qids,
            docs=[col.corpus[i].full_text for i in ids],
            queries=[col.queries[q].text for q in qids],
        )
    col, ids, qids = cache["col"], cache["ids"], cache["qids"]
    old, was_training = enc.spec.max_length, enc.model.training
    enc.model.eval()  # evaluation is never with dropout, whoever calls it
    try:
        with torch.inference_mode():
            if cfg.eval_max_doc_length:
                enc.spec.max_length = cfg.eval_max_doc_length
            dv = enc.encode_documents(cache["docs"], batch_size=32)
            enc.spec.max_length = old
            qv = enc.encode_queries(cache["queries"], batch_size=32)
    finally:
        enc.spec.max_length = old
        enc.model.train(was_training)
    ranked = exact_search(qv, dv, ids, k=100)
    run = dict(zip(qids, ranked))
    m = {k: float(v) for k, v in compute_metrics(run, col.qrels).items()}
    m["query_active_dims"] = float(np.mean(qv.active_dims()))
    m["doc_active_dims"] = float(np.mean(dv.active_dims()))
    m["eval_docs"] = len(ids)
    m["eval_queries"] = len(qids)
    return m


def _plot_history(history: list[dict], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [h for h in history if metric in h]
    if not pts:
        return
    ep = [h["epoch"] for h in pts]
    fig, ax1 = plt.subplots(figsize=(6, 3.6))
    ax1.plot(ep, [h[metric] for h in pts], "o-", color="tab:blue", label=metric)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(metric, color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(ep, [h["doc_active_dims"] for h in pts], "s--", color="tab:red", label="doc active dims")
    ax2.plot(ep, [h["query_active_dims"] for h in pts], "^:", color="tab:orange", label="query active dims")
    ax2.set_ylabel("mean active dims", color="tab:red")
    fig.legend(loc="lower right", fontsize=8)
    ax1.set_title("training curve (epoch 0 = start model)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train(config: TrainConfig | dict, *, show_progress: bool = True, log=print) -> TrainResult:
    """Train a SPLADE model as ``config`` says; returns where the checkpoints are and the per-epoch history.

    Checkpoints (``epoch-N/``, ``best/``) are SparseEncoder folders with a ``trainer_state.pt`` for resuming.
    """
    from .config import config_from_dict

    cfg = config_from_dict(config) if isinstance(config, dict) else config
    cfg.validate()
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = _device(cfg)
    _set_seed(cfg.seed)
    rows, n_neg = _prepare_rows(cfg)
    holdout: list[str] | None = None
    if cfg.holdout_queries:
        rows, holdout = split_holdout(rows, cfg.holdout_queries, cfg.split_seed)
        log(f"held out {len(holdout)} training queries for evaluation; {len(rows)} rows left for training")
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if holdout:  # which queries judged the run (they are drawn with split_seed, not the training seed)
        (out_dir / "holdout_queries.json").write_text(json.dumps(holdout) + "\n")

    state = load_state(cfg.resume_from) if cfg.resume_from else None
    start_from = cfg.resume_from or cfg.model
    enc = SpladeEncoder.load(start_from, mode="fp32")
    enc.model.to(device)
    amp = autocast_dtype(cfg, device)
    screen = device.type == "cpu" and cpu_supports_bf16()
    batcher = _Batcher(enc, device)

    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    reg_warmup = max(1, int(total_steps * cfg.regularizer_warmup_ratio))
    decay, no_decay = [], []
    for name, p in enc.model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith("bias") else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )
    scheduler = _scheduler(cfg, optimizer, total_steps)

    history: list[dict] = []
    step = 0
    best_value = -math.inf
    teacher_scale = cfg.teacher_scale
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        history = list(state["history"])
        best_value = float(state["best_value"])
        teacher_scale = state["teacher_scale"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["py_rng"])
        if state["total_steps"] != total_steps:
            raise InputError(
                f"{cfg.resume_from}: checkpoint was made for {state['total_steps']} steps, this config gives "
                f"{total_steps} (same data, batch_size and epochs are needed to resume)"
            )
        log(f"resuming from {cfg.resume_from} at step {step}")
    if cfg.loss != "infonce" and teacher_scale in ("auto", "lsq"):
        enc.model.eval()
        method = teacher_scale
        teacher_scale = fit_teacher_scale(enc, batcher, rows, n_neg, cfg, amp, screen, method)
        log(
            f"teacher_scale ({method}, fitted on the first {min(len(rows), SCALE_ROWS)} rows): {teacher_scale:.3f}"
        )
    teacher_scale = float(teacher_scale) if cfg.loss != "infonce" else 1.0

    eval_cache: dict = {}
    eval_seconds = [0.0]  # evaluation time, excluded from the max_minutes training budget

    def run_eval(epoch: int) -> dict:
        t0 = time.perf_counter()
        m = evaluate_checkpoint(enc, cfg, eval_cache, holdout)
        took = time.perf_counter() - t0
        eval_seconds[0] += took
        m.update(epoch=epoch, step=step, eval_seconds=round(took, 1))
        log(
            f"epoch {epoch}: {cfg.metric} {m.get(cfg.metric, float('nan')):.4f}  "
            f"query dims {m['query_active_dims']:.1f}  doc dims {m['doc_active_dims']:.1f}  "
            f"({m['eval_seconds']} s)"
        )
        return m

    if cfg.eval_data and cfg.eval_at_start and state is None:
        history.append(run_eval(0))

    def checkpoint(name: str, epoch_done: int, metrics: dict | None) -> Path:
        path = save_sparse_encoder(
            enc,
            out_dir / name,
            extra={"config": asdict(cfg), "step": step, "metrics": metrics, "history": history},
        )
        save_state(
            path,
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "history": history,
                "best_value": best_value,
                "teacher_scale": teacher_scale,
                "torch_rng": torch.get_rng_state(),
                "py_rng": random.getstate(),
                "total_steps": total_steps,
                "epoch_done": epoch_done,
            },
        )
        return path

    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", dynamic_ncols=True)
    step_losses: list[float] = []
    step_log: list[dict] = []
    best_path: Path | None = out_dir / "best" if (out_dir / "best").is_dir() and state else None
    last_path: Path | None = None
    stop = False
    start_epoch = step // steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        skip = step - epoch * steps_per_epoch
        enc.model.train(cfg.dropout)
        for b in range(max(skip, 0), steps_per_epoch):
            batch = [rows[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            q = encode_for_training(
                enc, batcher, [r.query for r in batch], "query", cfg.max_query_length, 256, amp, screen
            )
            docs = [t for r in batch for t in [r.positive, *r.negatives[:n_neg]]]
            d = encode_for_training(
                enc, batcher, docs, "document", cfg.max_doc_length, cfg.doc_micro_batch, amp, screen
            )
            d3 = d.view(len(batch), 1 + n_neg, -1)
            parts: dict[str, torch.Tensor] = {}
            if cfg.loss in ("margin_mse", "margin_mse+infonce"):
                t = torch.tensor([r.scores[: 1 + n_neg] for r in batch], dtype=torch.float32, device=device)
                parts["margin_mse"] = losses.margin_mse(q, d3, t * teacher_scale)
            if cfg.loss in ("infonce", "margin_mse+infonce"):
                w = cfg.infonce_weight if cfg.loss != "infonce" else 1.0
                parts["infonce"] = w * losses.info_nce(q, d3, cfg.infonce_scale)
            wq = losses.regularizer_weight(
                step, cfg.query_regularizer_weight, reg_warmup, cfg.regularizer_schedule
            )
            wd = losses.regularizer_weight(
                step, cfg.document_regularizer_weight, reg_warmup, cfg.regularizer_schedule
            )
            fq, fd = losses.flops(q), losses.flops(d)
            loss = sum(parts.values()) + wq * fq + wd * fd
            if not torch.isfinite(loss):
                raise InputError(f"step {step}: loss is {loss.item()} (lower learning_rate or teacher_scale)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(enc.model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            rec = {k: float(v.detach()) for k, v in parts.items()}
            rec.update(
                step=step,
                loss=float(loss.detach()),
                base=float(sum(parts.values()).detach()),
                flops_q=float(fq.detach()),
                flops_d=float(fd.detach()),
                w_q=wq,
                w_d=wd,
                q_dims=float((q.detach() > 0).sum(1).float().mean()),
                d_dims=float((d.detach() > 0).sum(1).float().mean()),
                lr=scheduler.get_last_lr()[0],
                seconds=round(time.perf_counter() - t_start, 1),
                train_seconds=round(time.perf_counter() - t_start - eval_seconds[0], 1),
            )
            step_losses.append(rec["loss"])
            step_log.append(rec)
            with (out_dir / "steps.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if bar is not None:
                post = {k: f"{rec[k]:.3g}" for k in parts}
                post.update(
                    flops_q=f"{rec['flops_q']:.3g}",
                    flops_d=f"{rec['flops_d']:.3g}",
                    q_dims=f"{rec['q_dims']:.0f}",
                    d_dims=f"{rec['d_dims']:.0f}",
                )
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            if cfg.save_every_steps and step % cfg.save_every_steps == 0 and b + 1 < steps_per_epoch:
                last_path = checkpoint("last", epoch, None)
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stop = True
                break
            if (
                cfg.max_minutes is not None
                and time.perf_counter() - t_start - eval_seconds[0] > cfg.max_minutes * 60
            ):
                log(f"time budget of {cfg.max_minutes} min reached at step {step}: stopping")
                stop = True
                break
        mid_epoch = stop and (step % steps_per_epoch) != 0
        if mid_epoch and cfg.max_steps is not None and step >= cfg.max_steps:
            last_path = checkpoint("last", epoch, None)  # a deliberate short run: resumable, not evaluated
            break
        # an epoch end, or a time-budget stop (evaluated too, as a fractional epoch, so its model can be kept)
        done = round(step / steps_per_epoch, 3) if mid_epoch else epoch + 1
        metrics = run_eval(done) if cfg.eval_data else {"epoch": done, "step": step}
        metrics["train_loss"] = float(np.mean(step_losses[-steps_per_epoch:])) if step_losses else None
        metrics["train_seconds"] = round(time.perf_counter() - t_start - eval_seconds[0], 1)
        history.append(metrics)
        value = metrics.get(cfg.metric)
        improved = value is not None and value > best_value
        if improved:
            best_value = value
        last_path = checkpoint(
            "last" if mid_epoch else f"epoch-{epoch + 1}", epoch if mid_epoch else epoch + 1, metrics
        )
        if cfg.keep_best and (improved or not cfg.eval_data):
            best_path = out_dir / "best"
            if best_path.exists():
                shutil.rmtree(best_path)
            shutil.copytree(last_path, best_path)
        (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        if cfg.eval_data:
            _plot_history(history, cfg.metric, out_dir / "curve.png")
        if stop:
            break
    if bar is not None:
        bar.close()
    enc.model.eval()
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    return TrainResult(
        output_dir=out_dir,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        history=history,
        steps=step,
        seconds=time.perf_counter() - t_start,
        losses=step_losses,
        step_log=step_log,
    )
