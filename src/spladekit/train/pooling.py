"""Differentiable SPLADE max pooling without the batch × length × vocabulary logits tensor.

The gradient of ``max_t act(h_t · w_v + b_v)`` reaches only the arg-max token of each (text, term) pair, and
ReLU zeroes it for every term whose max logit is ≤ 0. So a chunked no-grad pass finds, per text, the max logit and
its token for every term; only the active terms (max > 0, a few hundred per text) are then recomputed with grad
from the gathered hidden state of their arg-max token. Values and gradients equal the full computation (ties
aside), while memory drops from B × L × V floats to about B × active × d.
"""

from __future__ import annotations

import torch

from ..encode import pooling as _inference_pooling
from .losses import compute_dtype

DEFAULT_CHUNK_ELEMS = 1 << 22


@torch.no_grad()
def masked_max_argmax(
    hidden: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over valid tokens of ``hidden @ weight.T`` (no bias) and its token index, in vocabulary chunks.

    hidden (B, L, d), mask (B, L) bool, weight (V, d) -> values (B, V) float32 (float64 for float64 input),
    positions (B, V) int64.
    """
    b, length, _ = hidden.shape
    vocab = weight.shape[0]
    values = torch.empty((b, vocab), dtype=compute_dtype(hidden.dtype), device=hidden.device)
    positions = torch.empty((b, vocab), dtype=torch.long, device=hidden.device)
    pad = torch.zeros((b, length, 1), dtype=hidden.dtype, device=hidden.device)
    pad.masked_fill_(~mask.bool().unsqueeze(-1), float("-inf"))
    step = min(vocab, max(256, chunk_elems // max(b * length, 1)))
    for v0 in range(0, vocab, step):
        logits = torch.matmul(hidden, weight[v0 : v0 + step].T)
        logits += pad
        mx, arg = logits.max(dim=1)
        values[:, v0 : v0 + step] = mx
        positions[:, v0 : v0 + step] = arg
    return values, positions


@torch.no_grad()
def screened_active_argmax(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, terms, token positions) of every active (text, term) pair, exact in fp32, found via a bf16 screen.

    The bf16 pass costs half the fp32 one on CPUs with bf16 dot products; its error per logit is at most
    ``BF16_DOT_REL_ERR·‖h‖·‖w‖``, so a term whose bf16 max plus that bound is ≤ 0 cannot be active in fp32.
    Candidates (a few hundred per text) are recomputed in fp32 over all of the text's tokens, giving the exact
    max and arg-max.
    """
    h = hidden.float()
    w = weight.float()
    b = bias.float()
    approx, _ = masked_max_argmax(h.to(torch.bfloat16), mask, w.to(torch.bfloat16), chunk_elems)
    approx += b
    hnorm = torch.where(mask, h.norm(dim=-1), torch.zeros((), dtype=h.dtype)).amax(dim=1)
    margin = (_inference_pooling.BF16_DOT_REL_ERR * hnorm).unsqueeze(1) * w.norm(dim=1).unsqueeze(0)
    cand = approx + margin > 0
    out_rows, out_terms, out_pos = [], [], []
    neg_inf = torch.tensor(float("-inf"), dtype=h.dtype)
    for i in range(h.shape[0]):
        terms = torch.nonzero(cand[i]).squeeze(1)
        if terms.numel() == 0:
            continue
        logits = h[i] @ w[terms].T  # (L, C)
        logits = torch.where(mask[i].unsqueeze(1), logits, neg_inf)
        mx, arg = logits.max(dim=0)
        keep = mx + b[terms] > 0
        out_rows.append(torch.full((int(keep.sum()),), i, dtype=torch.long))
        out_terms.append(terms[keep])
        out_pos.append(arg[keep])
    if not out_rows:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, empty
    return torch.cat(out_rows), torch.cat(out_terms), torch.cat(out_pos)


def splade_max_pool(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    activation: str = "relu",
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    screen: bool = False,
) -> torch.Tensor:
    """SPLADE weights (B, V), differentiable w.r.t. ``hidden``, ``weight`` and ``bias``.

    Equals ``max_t act(hidden @ weight.T + bias)`` over valid tokens (``activation`` as in the encoder:
    'relu' = log1p(relu), 'log1p_relu' = log1p(log1p(relu))) but builds only the active terms' logits with grad.
    ``screen=True`` finds the active terms with a bf16 screen plus fp32 recheck (same result, faster where the
    CPU has bf16 dot products). The recomputed logits use ``hidden``'s dtype (fp32 unless under autocast).
    """
    mask = mask.bool()
    if screen:
        rows, terms, tok = screened_active_argmax(
            hidden.detach(), mask, weight.detach(), bias.detach(), chunk_elems
        )
    else:
        h_ng = hidden.detach()
        maxlog, pos = masked_max_argmax(h_ng, mask, weight.detach().to(h_ng.dtype), chunk_elems)
        maxlog += bias.detach().to(maxlog.dtype)
        rows, terms = torch.nonzero(maxlog > 0, as_tuple=True)
        tok = pos[rows, terms]
    out = torch.zeros((hidden.shape[0], weight.shape[0]), dtype=hidden.dtype, device=hidden.device)
    if rows.numel() == 0:
        # Keep the graph connected so backward() works on an all-zero batch.
        return out + 0.0 * hidden.sum() + 0.0 * weight.sum() + 0.0 * bias.sum()
    h = hidden[rows, tok]  # (N, d)
    logits = (h * weight[terms].to(h.dtype)).sum(-1) + bias[terms].to(h.dtype)
    vals = _inference_pooling.activate(logits, activation)
    return out.index_put((rows, terms), vals)


def naive_max_pool(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    activation: str = "relu",
) -> torch.Tensor:
    """The full B × L × V computation (reference for tests; what sentence-transformers does)."""
    logits = hidden @ weight.T + bias
    act = _inference_pooling.activate(logits, activation)
    act = act * mask.unsqueeze(-1).to(act.dtype)
    return act.max(dim=1).values
