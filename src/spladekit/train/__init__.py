"""Training by distillation: margin-MSE or listwise KL + FLOPS (SpladeLoss recipe), InfoNCE, hard-negative mining
(SPLADE and / or BM25), teacher scores (one teacher or an ensemble, with a report), SparseEncoder checkpoints."""

from .checkpoint import save_sparse_encoder
from .config import TrainConfig, load_config
from .ensemble_run import EnsembleResult, score_with_ensemble
from .losses import distill_kl, flops, info_nce, margin_mse, regularizer_weight
from .mine import mine_negatives
from .pooling import naive_max_pool, splade_max_pool
from .rows import TrainRow, read_rows, write_rows
from .soup import average_checkpoints
from .teacher import score_with_teacher
from .trainer import TrainResult, train

__all__ = [
    "train",
    "TrainConfig",
    "TrainResult",
    "load_config",
    "mine_negatives",
    "score_with_teacher",
    "score_with_ensemble",
    "EnsembleResult",
    "save_sparse_encoder",
    "average_checkpoints",
    "TrainRow",
    "read_rows",
    "write_rows",
    "margin_mse",
    "distill_kl",
    "flops",
    "info_nce",
    "regularizer_weight",
    "splade_max_pool",
    "naive_max_pool",
]
