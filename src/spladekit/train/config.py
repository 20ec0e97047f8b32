"""Training configuration: a dataclass whose defaults are the splade-mini model card's recipe, read from TOML/YAML."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

LOSSES = ("margin_mse", "infonce", "margin_mse+infonce", "kl", "margin_mse+kl")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# auto: the start model's own query table if it has one (an inference-free folder), else the masked-LM
QUERY_SIDES = ("auto", "mlm", "idf", "table")


@dataclass
class TrainConfig:
    """Everything a training run needs. Paths are relative to the current directory; ``train_data`` may also be a
    Hugging Face dataset id.

    Defaults follow the splade-mini card: SpladeLoss(SparseMarginMSELoss, query 0.5, document 0.3), batch 48,
    lr 8e-5, 6 epochs, cosine schedule with warm-up ratio 0.025, AdamW, seed 42, mixed precision where supported,
    evaluation each epoch and the best checkpoint kept.
    """

    train_data: str = ""
    model: str | None = None  # None or "splade-tiny" = bundled; any masked-LM or SparseEncoder folder
    output_dir: str = "runs/train"
    # loss
    loss: str = "margin_mse"
    teacher_scale: float | str = (
        1.0  # multiply teacher scores; "auto" = match the initial student's margin spread; "lsq" = least squares
    )
    infonce_weight: float = 1.0  # weight of InfoNCE when loss = "margin_mse+infonce"
    # listwise KL over the positive and all negatives (sentence-transformers' SparseDistillKLDivLoss, whose default
    # temperature is 2.0); kl_weight weighs it when loss = "margin_mse+kl"
    kl_temperature: float = 2.0
    kl_weight: float = 1.0
    infonce_scale: float = 1.0  # logits = scale · dot product (1.0 suits SPLADE's unnormalised dot products)
    query_regularizer_weight: float = 0.5
    document_regularizer_weight: float = 0.3
    regularizer_warmup_ratio: float = 1 / 3  # quadratic ramp over this share of the steps (ST's default)
    regularizer_schedule: str = "quadratic"
    # query side: "mlm" (queries through the masked-LM), "idf" (an inference-free table started from BM25 idf over
    # eval_data's corpus, else the rows' documents), "table" (the start model's own table); see train.query_table.
    # With a table, FLOPS applies to documents only and query_regularizer_weight is ignored
    query_side: str = "auto"
    query_table_learning_rate: float | None = None  # the table's own learning rate (None = learning_rate)
    # optimisation
    epochs: int = 6
    batch_size: int = 48
    learning_rate: float = 8e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.025
    scheduler: str = "cosine"  # cosine | linear | constant
    max_grad_norm: float = 1.0
    # run each step's batch as this many micro-batches, gradients summed: the same step with less memory (as in
    # transformers' Trainer, FLOPS and InfoNCE then see each micro-batch; margin-MSE and KL are exact)
    gradient_accumulation: int = 1
    dropout: bool = True  # the model's dropout during training (off: train in eval mode)
    seed: int = 42
    precision: str = "auto"  # transformer autocast: auto = fp16 on GPU, fp32 on CPU (head screen is bf16)
    max_steps: int | None = None  # stop early (tests, timing runs); the schedule still spans all epochs
    max_minutes: float | None = None  # training-time budget (evaluation excluded); stops with a checkpoint
    # data
    train_split: str = "train"  # the split read when train_data is a Hugging Face dataset id
    max_query_length: int = 64
    max_doc_length: int = 256
    num_negatives: int | None = None  # use the first N negatives of each row (None = all; rows must agree)
    doc_micro_batch: int = 64  # documents per forward pass (sorted by length to cut padding)
    # evaluation / checkpoints
    eval_data: str | None = None  # BEIR folder; evaluated at each epoch end
    eval_split: str = "test"
    # hold out this many training queries (all their rows leave training) and evaluate on them instead, judged by
    # eval_data's qrels of the rows' split: the best checkpoint is then chosen without looking at the test split
    holdout_queries: int = 0
    holdout_split: str = "train"
    # seed of the hold-out draw and of eval_corpus_sample, apart from `seed` so that repeat runs with other training
    # seeds are judged on the same queries and documents (42 = the draws of configs that predate this field)
    split_seed: int = 42
    eval_max_doc_length: int | None = None  # truncate documents for the per-epoch evaluation (speed)
    eval_corpus_sample: int | None = None  # judged docs + this many others (cheap curve); None = full corpus
    eval_at_start: bool = True  # also evaluate the start model (epoch 0 of the curve)
    metric: str = "ndcg@10"
    keep_best: bool = True
    save_every_steps: int | None = None  # also write a resumable checkpoint every N steps
    resume_from: str | None = None
    threads: int | None = None
    device: str = "auto"
    extra: dict = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Check values early, with one clear line per problem."""
        if not self.train_data:
            raise InputError(
                "config: 'train_data' (a JSONL or parquet file of training rows, or a dataset id) is required"
            )
        if self.loss not in LOSSES:
            raise InputError(f"config: unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.precision not in PRECISIONS:
            raise InputError(
                f"config: unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}"
            )
        if self.scheduler not in ("cosine", "linear", "constant"):
            raise InputError(f"config: unknown scheduler {self.scheduler!r}: use cosine, linear or constant")
        if self.regularizer_schedule not in ("quadratic", "linear"):
            raise InputError("config: regularizer_schedule must be 'quadratic' or 'linear'")
        for name in (
            "epochs",
            "batch_size",
            "max_query_length",
            "max_doc_length",
            "doc_micro_batch",
            "gradient_accumulation",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"config: {name} must be a positive integer")
        if not (self.learning_rate > 0):
            raise InputError("config: learning_rate must be positive")
        if not (0 <= self.warmup_ratio < 1) or not (0 < self.regularizer_warmup_ratio <= 1):
            raise InputError("config: warmup_ratio must be in [0, 1) and regularizer_warmup_ratio in (0, 1]")
        if self.gradient_accumulation > self.batch_size:
            raise InputError(
                "config: gradient_accumulation cannot exceed batch_size (each micro-batch needs a row)"
            )
        for name in ("kl_temperature", "kl_weight", "infonce_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                raise InputError(f"config: {name} must be a positive number")
        if isinstance(self.teacher_scale, str) and self.teacher_scale not in ("auto", "lsq"):
            raise InputError("config: teacher_scale must be a number, 'auto' or 'lsq'")
        if not isinstance(self.holdout_queries, int) or self.holdout_queries < 0:
            raise InputError("config: holdout_queries must be a non-negative integer")
        if self.holdout_queries and not self.eval_data:
            raise InputError(
                "config: holdout_queries needs eval_data (the BEIR folder whose qrels judge them)"
            )
        if self.query_side not in QUERY_SIDES:
            raise InputError(
                f"config: unknown query_side {self.query_side!r}: choose one of {', '.join(QUERY_SIDES)}"
            )
        if self.query_table_learning_rate is not None:
            if self.query_side == "mlm":
                raise InputError(
                    "config: query_table_learning_rate needs a table query side (query_side = 'idf' "
                    "or 'table'); with 'mlm' queries go through the masked-LM"
                )
            if isinstance(self.query_table_learning_rate, bool) or not (
                isinstance(self.query_table_learning_rate, (int, float))
                and self.query_table_learning_rate > 0
            ):
                raise InputError("config: query_table_learning_rate must be a positive number")
        if self.num_negatives is not None and self.num_negatives < 1:
            raise InputError("config: num_negatives must be at least 1")
        return self


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]


def config_from_dict(data: dict, source: str = "config") -> TrainConfig:
    """Build a config from a mapping; an unknown key is an error (typos must not silently use defaults).

    Keys may be grouped in tables (``[train]``, ``[loss]``, ...): nested tables are flattened.
    """
    flat: dict = {}

    def walk(d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict) and k != "extra":
                walk(v)
            else:
                flat[k] = v

    walk(data)
    known = set(config_fields()) | {"extra"}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise InputError(
            f"{source}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return TrainConfig(**flat)


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file, apply ``overrides``, validate."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise InputError(f"{path}: config must be .toml, .yaml or .yml")
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - parser errors become one line naming the file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot parse config ({msg})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: config must be a mapping of settings")
    data.update(overrides or {})
    return config_from_dict(data, str(path)).validate()
