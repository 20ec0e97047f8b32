"""Optimiser and learning-rate schedule of a run: AdamW without decay on 1-d parameters; cosine, linear or
constant schedule after a linear warm-up."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def build_optimizer(
    cfg: TrainConfig, model: torch.nn.Module, query_table: torch.nn.Module | None = None
) -> torch.optim.Optimizer:
    """AdamW; biases, LayerNorms and other 1-d parameters get no weight decay. A trainable query table is the
    last group, with its own learning rate (``query_table_learning_rate``; idf-scale weights move ~1000x more
    than transformer weights) and no decay; the schedule scales every group alike."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith("bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if query_table is not None:
        lr = cfg.query_table_learning_rate or cfg.learning_rate
        groups.append({"params": list(query_table.parameters()), "weight_decay": 0.0, "lr": lr})
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def build_scheduler(cfg: TrainConfig, optimizer, total_steps: int):
    """The config's schedule over ``total_steps``, warming up over ``warmup_ratio`` of them."""
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
