"""The student at work on training rows: its device and autocast dtype, tokenising as the encoder does,
differentiable SPLADE vectors in length-sorted micro-batches, teacher score tensors, eval mode for a while."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from ..encode import SpladeEncoder
from .config import TrainConfig
from .losses import at_least_fp32
from .pooling import splade_max_pool
from .rows import TrainRow


def training_device(cfg: TrainConfig) -> torch.device:
    """``cfg.device``; 'auto' = CUDA when available, else CPU."""
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
    """Tokenises texts the way the encoder does (prompt, lower-casing) with a training max length.

    ``query_table`` (a ``query_table.TrainableQueryTable``), when set, is the run's query side: every caller of
    ``encode_rows`` (the step, the teacher-scale fit) then scores table queries without being told.
    """

    def __init__(self, enc: SpladeEncoder, device: torch.device, query_table=None) -> None:
        self.enc = enc
        self.device = device
        self.query_table = query_table

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
    """Differentiable SPLADE vectors (len(texts), V). Texts run in length-sorted micro-batches (less padding).

    The vectors are float32 (autocast output is widened), or float64 when the model is float64.
    """
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
                at_least_fp32(hidden),
                mask,
                enc.head_weight,
                enc.head_bias,
                enc.spec.activation,
                screen=screen,
            )
        )
    out = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return out[inverse.to(out.device)]


def row_texts(rows: Sequence[TrainRow], n_neg: int) -> list[str]:
    """Each row's positive, then its first ``n_neg`` negatives, row after row ((1 + n_neg) texts per row)."""
    return [t for r in rows for t in [r.positive, *r.negatives[:n_neg]]]


def encode_rows(
    enc: SpladeEncoder,
    batcher: _Batcher,
    rows: Sequence[TrainRow],
    n_neg: int,
    cfg: TrainConfig,
    query_micro_batch: int,
    amp: torch.dtype | None,
    screen: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (B, V) and documents (B·(1 + n_neg), V) of ``rows``, positive first within each row, truncated at
    the config's max lengths; documents run ``cfg.doc_micro_batch`` at a time. With the batcher's
    ``query_table`` the queries are table lookups (differentiable in the table), not masked-LM vectors."""
    if batcher.query_table is not None:
        q = batcher.query_table(enc, [r.query for r in rows])
    else:
        q = encode_for_training(
            enc,
            batcher,
            [r.query for r in rows],
            "query",
            cfg.max_query_length,
            query_micro_batch,
            amp,
            screen,
        )
    d = encode_for_training(
        enc, batcher, row_texts(rows, n_neg), "document", cfg.max_doc_length, cfg.doc_micro_batch, amp, screen
    )
    return q, d


def teacher_scores(
    rows: Sequence[TrainRow], n_neg: int, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """Teacher scores (B, 1 + n_neg) of each row's positive and first ``n_neg`` negatives."""
    return torch.tensor([r.scores[: 1 + n_neg] for r in rows], dtype=dtype, device=device)


def teacher_margins(
    rows: Sequence[TrainRow], n_neg: int, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """Teacher margins (B, n_neg): positive minus each of the first ``n_neg`` negatives, taken from a row's
    margins or worked out from its scores in ``dtype`` (what every loss here uses: they see differences only)."""
    out = []
    for r in rows:
        if r.scores is not None:
            s = torch.tensor(r.scores[: 1 + n_neg], dtype=dtype)
            out.append(s[:1] - s[1:])
        else:
            out.append(torch.tensor(r.margins[:n_neg], dtype=dtype))
    return torch.stack(out).to(device)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode (no dropout) inside the block; its training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
