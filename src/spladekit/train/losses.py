"""Training losses on dense (B, V) SPLADE batches, defined as sentence-transformers 6.2 defines them.

- margin MSE: mean over (query, negative) of ((s(q,p) − s(q,n_i)) − (t_p − t_i))², s = dot product;
- FLOPS: Σ_terms (mean over the batch of the term's weight)²; the document term pools positives and negatives;
- InfoNCE: cross-entropy of each query against every positive and negative in the batch (in-batch negatives);
- regulariser weights ramp up quadratically: w(step) = w_max · min(1, step / warmup_steps)².
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dot_scores(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """Pairwise dot products: queries (B, V), docs (B, K, V) -> (B, K)."""
    return torch.einsum("bv,bkv->bk", queries, docs)


def margin_mse(queries: torch.Tensor, docs: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between student and teacher margins. docs (B, 1+N, V) with the positive first; teacher (B, 1+N)."""
    s = dot_scores(queries, docs).float()
    student = s[:, :1] - s[:, 1:]
    target = (teacher[:, :1] - teacher[:, 1:]).to(student.dtype).detach()
    return F.mse_loss(student, target)


def flops(x: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser: Σ_terms (mean over rows of the term's weight)² (a smooth proxy for posting-list cost)."""
    return torch.sum(torch.mean(x.float(), dim=0) ** 2)


def info_nce(queries: torch.Tensor, docs: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """In-batch contrastive loss: query i's positive is docs[i, 0]; every other text in ``docs`` is a negative."""
    b, k, v = docs.shape
    flat = docs.reshape(b * k, v)
    logits = (queries.float() @ flat.float().T) * scale  # (B, B*K)
    target = torch.arange(b, device=queries.device) * k
    return F.cross_entropy(logits, target)


def regularizer_weight(step: int, max_weight: float, warmup_steps: int, schedule: str = "quadratic") -> float:
    """Regulariser weight at ``step`` (0-based), ramped as SpladeRegularizerWeightSchedulerCallback does."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return max_weight
    ratio = step / warmup_steps
    return max_weight * (ratio if schedule == "linear" else ratio**2)
