"""Training losses on dense (B, V) SPLADE batches, defined as sentence-transformers (6.2, 6.3) defines them.

- margin MSE: mean over (query, negative) of ((s(q,p) − s(q,n_i)) − (t_p − t_i))², s = dot product;
- listwise KL (``SparseDistillKLDivLoss``): T² · mean over queries of KL(softmax(t / T) ‖ softmax(s / T)) over the
  positive and every negative, T = 2 by default;
- FLOPS: Σ_terms (mean over the batch of the term's weight)²; the document term pools positives and negatives;
- InfoNCE: cross-entropy of each query against every positive and negative in the batch (in-batch negatives);
- regulariser weights ramp up quadratically: w(step) = w_max · min(1, step / warmup_steps)².

Losses are computed in float32, or in float64 when given float64 vectors (as the parity tests do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32, or ``dtype`` if it is wider: bf16/fp16 (autocast output) is widened, float64 is kept."""
    return torch.promote_types(dtype, torch.float32)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in its compute dtype (see ``compute_dtype``); a no-op for float32 and float64."""
    return x.to(compute_dtype(x.dtype))


def margins(scores: torch.Tensor) -> torch.Tensor:
    """Positive-minus-negative margins: scores (B, 1+N) with the positive first -> (B, N)."""
    return scores[:, :1] - scores[:, 1:]


def dot_scores(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """Pairwise dot products: queries (B, V), docs (B, K, V) -> (B, K)."""
    return torch.einsum("bv,bkv->bk", queries, docs)


def teacher_margins(teacher: torch.Tensor, k: int) -> torch.Tensor:
    """Teacher values as margins (B, k − 1): scores (B, k) with the positive first, or margins already (B, k − 1)
    (positive minus each negative). The shape decides, as in sentence-transformers' MarginMSELoss."""
    if teacher.dim() == 2 and teacher.shape[1] == k:
        return margins(teacher)
    if teacher.dim() == 2 and teacher.shape[1] == k - 1:
        return teacher
    raise ValueError(
        f"teacher values of shape {tuple(teacher.shape)} fit neither scores (B, {k}) nor margins (B, {k - 1})"
    )


def margin_mse(queries: torch.Tensor, docs: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between student and teacher margins. docs (B, 1+N, V) with the positive first; teacher (B, 1+N) scores
    or (B, N) margins (``teacher_margins``): the loss only ever sees differences, so margins are enough."""
    student = margins(at_least_fp32(dot_scores(queries, docs)))
    target = teacher_margins(teacher, docs.shape[1]).to(student.dtype).detach()
    return F.mse_loss(student, target)


def distill_kl(
    queries: torch.Tensor, docs: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """Listwise distillation: KL(teacher ‖ student) of the softmax over each query's positive and negatives.

    As sentence-transformers' ``SparseDistillKLDivLoss`` (``DistillKLDivLoss``, ``KLDivLoss(reduction=
    "batchmean")``, scaled by T² so gradients keep their size across temperatures). teacher: (B, 1+N) scores or
    (B, N) margins: a softmax does not change when a row is shifted by a constant, so scores (s_p, s_p − m_i)
    and (0, −m_i) give the same target, and margin-only rows need no invented absolute scores.
    """
    k = docs.shape[1]
    student = at_least_fp32(dot_scores(queries, docs)) / temperature
    t = teacher.to(student.dtype).detach()
    if t.dim() == 2 and t.shape[1] == k - 1:  # margins: the same softmax as any scores with these differences
        t = torch.cat([torch.zeros_like(t[:, :1]), -t], dim=1)
    if t.shape != student.shape:
        raise ValueError(
            f"teacher values of shape {tuple(teacher.shape)} fit neither (B, {k}) nor (B, {k - 1})"
        )
    target = torch.softmax(t / temperature, dim=1)
    return F.kl_div(torch.log_softmax(student, dim=1), target, reduction="batchmean") * temperature**2


def flops(x: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser: Σ_terms (mean over rows of the term's weight)² (a smooth proxy for posting-list cost)."""
    return torch.sum(torch.mean(at_least_fp32(x), dim=0) ** 2)


def info_nce(queries: torch.Tensor, docs: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """In-batch contrastive loss: query i's positive is docs[i, 0]; every other text in ``docs`` is a negative."""
    b, k, v = docs.shape
    flat = docs.reshape(b * k, v)
    logits = (at_least_fp32(queries) @ at_least_fp32(flat).T) * scale  # (B, B*K)
    target = torch.arange(b, device=queries.device) * k
    return F.cross_entropy(logits, target)


def regularizer_weight(step: int, max_weight: float, warmup_steps: int, schedule: str = "quadratic") -> float:
    """Regulariser weight at ``step`` (0-based), ramped as SpladeRegularizerWeightSchedulerCallback does."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return max_weight
    ratio = step / warmup_steps
    return max_weight * (ratio if schedule == "linear" else ratio**2)
