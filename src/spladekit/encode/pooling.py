"""SPLADE pooling without the batch × length × vocabulary logits tensor.

log1p(relu(x)) is monotone, so max over tokens of log1p(relu(logit)) = log1p(relu(max over tokens of logit)):
take a running max of raw logits over vocabulary chunks (padding masked to -inf), then apply the activation once
per term. Peak memory is bounded by ``chunk_elems`` floats, whatever the vocabulary size.
"""

from __future__ import annotations

import torch

# Floats held by one logits chunk (batch × length × vocab slice): 4M floats = 16 MB.
DEFAULT_CHUNK_ELEMS = 1 << 22

# Relative error bound of a bf16 product accumulated in fp32: both inputs rounded to 8 significant bits
# (unit roundoff 2^-8 each), so |Δ(h·w)| ≤ (2u + u²)·Σ|h_i w_i| ≤ (2u + u²)·‖h‖·‖w‖; plus fp32 accumulation slack.
BF16_DOT_REL_ERR = 2 * 2.0**-8 + 2.0**-16 + 1e-5


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """SPLADE activation: log(1 + relu(x)), or log(1 + log(1 + relu(x))) for 'log1p_relu' models."""
    y = torch.log1p(torch.relu(x))
    if activation == "log1p_relu":
        y = torch.log1p(y)
    return y


def _vocab_step(batch: int, length: int, vocab: int, chunk_elems: int) -> int:
    step = max(256, chunk_elems // max(batch * length, 1))
    return min(vocab, step)


def masked_max_logits(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> torch.Tensor:
    """Max over valid tokens of ``hidden @ weight.T`` (no bias), in vocabulary chunks.

    hidden (B, L, d), mask (B, L) bool, weight (V, d) -> (B, V) in hidden's dtype (float32 accumulate for bf16).
    Rows whose mask is all False come back as -inf.
    """
    b, length, _ = hidden.shape
    vocab = weight.shape[0]
    out = torch.empty((b, vocab), dtype=torch.float32, device=hidden.device)
    pad_bias = torch.zeros((b, length, 1), dtype=hidden.dtype, device=hidden.device)
    pad_bias.masked_fill_(~mask.unsqueeze(-1), float("-inf"))
    step = _vocab_step(b, length, vocab, chunk_elems)
    for v0 in range(0, vocab, step):
        logits = torch.matmul(hidden, weight[v0 : v0 + step].T)
        logits += pad_bias
        out[:, v0 : v0 + step] = logits.amax(dim=1)
    return out


# Texts at least this long on average are pooled one text at a time (no padding, cache-sized logits blocks).
PACKED_MIN_MEAN_LENGTH = 48
# Vocabulary columns per block in the per-text path: L × 2048 logits stay in L2/L3 cache for L ≤ 512.
PACKED_VOCAB_STEP = 2048


def packed_max_logits(
    hidden: torch.Tensor, lengths: list[int], weight_t: torch.Tensor, vocab_step: int = PACKED_VOCAB_STEP
) -> torch.Tensor:
    """Max over each text's own tokens of ``hidden @ weight_t`` (no bias), one text at a time.

    hidden (B, L, d) with text i's tokens in ``hidden[i, :lengths[i]]``; weight_t (d, V) contiguous -> (B, V)
    float32. No padding is multiplied and no mask pass is needed; each (tokens × vocab_step) block of logits is
    reduced while it is still in cache, which makes this 20-35% faster than the padded batch path on long texts.
    Rows with length 0 come back as -inf.
    """
    b = hidden.shape[0]
    vocab = weight_t.shape[1]
    out = torch.full((b, vocab), float("-inf"), dtype=torch.float32, device=hidden.device)
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        h = hidden[i, :n]
        for v0 in range(0, vocab, vocab_step):
            out[i, v0 : v0 + vocab_step] = torch.amax(h @ weight_t[:, v0 : v0 + vocab_step], dim=0)
    return out


# Vocabulary rows per block in the vocabulary-major per-text path.
VOCAB_MAJOR_STEP = 1024


def vocab_major_max_logits(
    hidden: torch.Tensor, lengths: list[int], weight: torch.Tensor, vocab_step: int = VOCAB_MAJOR_STEP
) -> torch.Tensor:
    """``packed_max_logits`` with the product the other way round: ``weight[block] @ h.T`` (vocab × tokens), so
    the max runs along contiguous rows. On AVX2 CPUs this is 1.05-1.3× faster than the token-major blocks
    (``bench/encode_results.md``, run E); on AVX-512 the token-major path was the one measured fastest."""
    b = hidden.shape[0]
    vocab = weight.shape[0]
    out = torch.full((b, vocab), float("-inf"), dtype=torch.float32, device=hidden.device)
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        h_t = hidden[i, :n].T.contiguous()
        for v0 in range(0, vocab, vocab_step):
            out[i, v0 : v0 + vocab_step] = torch.amax(weight[v0 : v0 + vocab_step] @ h_t, dim=1)
    return out


def head_layout(device: torch.device | str = "cpu") -> str:
    """Which per-text fp32 head runs here: ``vocab-major`` on CPUs whose widest kernels torch uses are AVX2 (or
    less), ``token-major`` on AVX-512 CPUs and other devices (the layout each was measured fastest on)."""
    if torch.device(device).type != "cpu":
        return "token-major"
    return "token-major" if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else "vocab-major"


def max_logits(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    weight_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked max logits (no bias), choosing the per-text path for long texts and the padded batch otherwise."""
    lengths = mask.sum(dim=1)
    if weight_t is not None and float(lengths.float().mean()) >= PACKED_MIN_MEAN_LENGTH:
        if head_layout(hidden.device) == "vocab-major" and weight.dtype == hidden.dtype:
            return vocab_major_max_logits(hidden, lengths.tolist(), weight)
        return packed_max_logits(hidden, lengths.tolist(), weight_t)
    return masked_max_logits(hidden, mask, weight)


def masked_sum_activated(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    activation: str,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> torch.Tensor:
    """Sum pooling (original SPLADE): Σ over valid tokens of act(logit), in vocabulary chunks."""
    b, length, _ = hidden.shape
    vocab = weight.shape[0]
    out = torch.empty((b, vocab), dtype=torch.float32, device=hidden.device)
    m = mask.unsqueeze(-1).to(torch.float32)
    step = _vocab_step(b, length, vocab, chunk_elems)
    for v0 in range(0, vocab, step):
        logits = torch.matmul(hidden, weight[v0 : v0 + step].T).float() + bias[v0 : v0 + step]
        out[:, v0 : v0 + step] = (activate(logits, activation) * m).sum(dim=1)
    return out


def screened_max_logits(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    weight_lowp: torch.Tensor,
    weight_norms: torch.Tensor,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    weight_lowp_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact fp32 max logits (bias included) for every term that can be positive; -inf for the rest.

    A bf16 pass finds the max logits cheaply; its error per (token, term) is at most
    ``BF16_DOT_REL_ERR·‖h‖·‖w‖``, so any term whose bf16 max plus that bound is ≤ 0 is provably ≤ 0 in fp32 and
    is dropped by ReLU anyway. The surviving terms (a few hundred per text) are recomputed in fp32 over all of the
    text's tokens, so the result equals the fp32 computation for every term that ends up active.
    """
    b = hidden.shape[0]
    if weight_lowp_t is not None:
        approx = max_logits(hidden.to(weight_lowp.dtype), mask, weight_lowp, weight_lowp_t)
    else:
        approx = masked_max_logits(hidden.to(weight_lowp.dtype), mask, weight_lowp, chunk_elems)
    approx += bias
    hnorm = torch.where(mask, hidden.norm(dim=-1), torch.zeros((), dtype=hidden.dtype)).amax(dim=1)  # (B,)
    margin = (BF16_DOT_REL_ERR * hnorm).unsqueeze(1) * weight_norms.unsqueeze(0)  # (B, V)
    candidate = approx + margin > 0
    out = torch.full_like(approx, float("-inf"))
    for i in range(b):
        terms = torch.nonzero(candidate[i]).squeeze(1)
        if terms.numel() == 0:
            continue
        h = hidden[i, mask[i]]
        exact = (h @ weight[terms].T).amax(dim=0) + bias[terms]
        out[i, terms] = exact
    return out
