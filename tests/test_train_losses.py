"""Training maths: the arg-max pooling equals the full computation; losses equal sentence-transformers'."""

from __future__ import annotations

import pytest
import torch

from spladekit.encode.pooling import activate
from spladekit.train import flops, margin_mse, naive_max_pool, regularizer_weight, splade_max_pool

# float results against a reference: CI runs these again on torch's AVX2 kernels
pytestmark = pytest.mark.numerics

QUERIES = ["what causes fever", "protein folding in cells", "vaccine side effects", "insulin and diabetes"]
DOCS = [
    [
        "fever is caused by infection and inflammation",
        "the weather in spring is mild",
        "a recipe for bread",
        "fever and cough are symptoms of flu",
        "football results from sunday",
    ],
    [
        "chaperone proteins help folding of proteins inside cells",
        "stock prices fell sharply",
        "cells divide by mitosis",
        "misfolded proteins cause disease",
        "a history of rome",
    ],
    [
        "vaccines can cause mild side effects such as soreness",
        "how to train a dog",
        "side effects of aspirin",
        "the immune response to vaccination",
        "mountain climbing gear",
    ],
    [
        "insulin regulates blood glucose in diabetes",
        "painting with oil colours",
        "type two diabetes and diet",
        "glucose metabolism in the liver",
        "ancient egyptian pyramids",
    ],
]
SCORES = [
    [0.9, 0.1, 0.0, 0.6, 0.05],
    [0.8, 0.0, 0.3, 0.5, 0.0],
    [0.85, 0.0, 0.4, 0.5, 0.0],
    [0.9, 0.0, 0.6, 0.4, 0.0],
]


def _hidden(enc, texts):
    tok = enc.tokenizer(texts, padding=True, return_tensors="pt")
    return enc.hidden_states(tok["input_ids"], tok["attention_mask"]), tok["attention_mask"].bool()


def _pool_magnitudes(hidden, mask, weight, bias, g):
    """For each pooled value and each gradient entry of ``(pool(hidden) * g).sum()``, the sum of the magnitudes
    of the terms the exact computation adds up to get it (float64).

    Rounding error, in whatever order a CPU's kernels add, is at most a small multiple of eps times this: a
    tolerance proportional to it holds on any kernel, unlike one relative to a result that may have cancelled.
    """
    h, w, b = (t.detach().double().requires_grad_(True) for t in (hidden, weight, bias))
    ha, wa = h.detach().abs(), w.detach().abs()
    # the value of h @ w.T + b, with gradients that flow through |w| (to h) and |h| (to w)
    logits = (h @ w.T + b).detach() + (h @ wa.T - (h @ wa.T).detach()) + (ha @ w.T - (ha @ w.T).detach())
    logits = logits + (b - b.detach())
    act = activate(logits, "relu") * mask.unsqueeze(-1)  # d act / d logit = 1 / (1 + logit) > 0 where active
    (act.max(dim=1).values * g.double().abs()).sum().backward()
    values = (ha @ wa.T + b.detach().abs()).masked_fill(~mask.unsqueeze(-1), 0).amax(dim=1)
    return values, h.grad, w.grad, b.grad


@pytest.mark.parametrize("screen", [False, True])
def test_argmax_pool_equals_full_computation(tiny_mlm, screen):
    """Values and gradients (hidden states, head weight, bias) of the sparse pooling equal the dense B×L×V one.

    The reference is the dense computation in float64 from the same inputs. Without the screen the pooling runs
    in float64 too (error ~1e-16 of the magnitudes summed); the screen runs in float32 by design, so it is held to
    float32 rounding: 1e-5 of the magnitudes summed (``_pool_magnitudes``; measured ≤ 2e-7 with AVX-512 and AVX2
    kernels). A real mismatch (a wrong arg-max token, a missing bias or activation) is of the order of those
    magnitudes.
    """
    from spladekit import SpladeEncoder

    enc = SpladeEncoder.load(tiny_mlm, mode="fp32")
    enc.mlm.to(torch.float32 if screen else torch.float64)
    texts = [d for ds in DOCS for d in ds][:8]
    hidden, mask = _hidden(enc, texts)
    w, b = enc.head_weight.detach(), enc.head_bias.detach()
    g = torch.randn(len(texts), w.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run(fn, *inputs, **kw):
        h, weight, bias = (t.detach().clone().requires_grad_(True) for t in inputs)
        out = fn(h, mask, weight, bias, **kw)
        (out * g.to(out.dtype)).sum().backward()
        return out.detach(), h.grad, weight.grad, bias.grad

    fast = run(splade_max_pool, hidden, w, b, screen=screen)
    ref = run(naive_max_pool, hidden.double(), w.double(), b.double())
    assert (ref[0] > 0).sum() > 100, "the tiny model must have active terms for this test to mean anything"
    assert fast[0].dtype == (torch.float32 if screen else torch.float64)
    rtol = 1e-5 if screen else 1e-12
    names = ("values", "hidden grad", "weight grad", "bias grad")
    for name, a, r, m in zip(names, fast, ref, _pool_magnitudes(hidden, mask, w, b, g)):
        err = (a.double() - r).abs()
        assert bool((err <= rtol * m).all()), (name, float((err / m.clamp_min(1e-300)).max()))


def _st_model(path):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(path), device="cpu").eval()


def _margin_mse_magnitude(q, docs, teacher):
    """Scale of the rounding error of margin-MSE = mean((m − t)²), m = s_pos − s_neg: to first order it is
    mean(2·|m − t|·(s_pos + s_neg + |t|)) + the loss itself, as a dot product of non-negative SPLADE vectors
    cannot cancel (its error scales with its value) but a margin can."""
    s = torch.einsum("bv,bkv->bk", q, docs)
    m, t = s[:, :1] - s[:, 1:], teacher[:, :1] - teacher[:, 1:]
    return float((2 * (m - t).abs() * (s[:, :1] + s[:, 1:] + t.abs())).mean() + ((m - t) ** 2).mean())


TOTAL_STEPS = 30  # the schedule the parity tests put both sides at


def _st_losses(tiny_mlm, base_loss, step: int, labels: torch.Tensor) -> dict:
    """SpladeLoss(base_loss(model), query 0.5, document 0.3) of sentence-transformers on QUERIES / DOCS in float64,
    with its regulariser weights where its scheduler callback puts them at ``step`` of TOTAL_STEPS."""
    from sentence_transformers.sparse_encoder.callbacks import SpladeRegularizerWeightSchedulerCallback
    from sentence_transformers.sparse_encoder.losses import SpladeLoss
    from transformers import TrainerState

    st = _st_model(tiny_mlm).to(torch.float64)
    loss_fn = SpladeLoss(st, base_loss(st), query_regularizer_weight=0.5, document_regularizer_weight=0.3)
    cb = SpladeRegularizerWeightSchedulerCallback(loss_fn)
    state = TrainerState(max_steps=TOTAL_STEPS, global_step=step)
    cb.on_train_begin(None, state, None)
    cb.on_step_begin(None, state, None)
    columns = [QUERIES] + [[d[j] for d in DOCS] for j in range(5)]
    features = [st.preprocess(c) for c in columns]
    with torch.no_grad():
        return loss_fn(features, labels)


def _our_vectors(tiny_mlm) -> tuple[torch.Tensor, torch.Tensor]:
    """Our training vectors of QUERIES (4, V) and DOCS (4, 5, V), float64, from the same model."""
    from spladekit import SpladeEncoder
    from spladekit.train.batching import _Batcher, encode_for_training

    enc = SpladeEncoder.load(tiny_mlm, mode="fp32")
    enc.mlm.to(torch.float64).eval()
    batcher = _Batcher(enc, torch.device("cpu"))
    flat = [t for ds in DOCS for t in ds]
    with torch.no_grad():
        q = encode_for_training(enc, batcher, QUERIES, "query", 512, 64, None, False)
        d = encode_for_training(enc, batcher, flat, "document", 512, 64, None, False)
    return q, d.view(4, 5, -1)


@pytest.mark.parametrize("step", [0, 3, 10, 25])
def test_loss_parity_with_sentence_transformers(tiny_mlm, step):
    """margin-MSE and both FLOPS terms equal SpladeLoss(SparseMarginMSELoss, 0.5, 0.3) at the same warm-up state.

    Both sides run in float64 from the same texts and scores, so they agree to float64 rounding whatever order a
    CPU's kernels add in: the bound is 1e-12 of the magnitude each loss adds up (``_margin_mse_magnitude``; FLOPS
    cannot cancel, so its value is its magnitude). Measured: ≤ 4e-17 of it with AVX-512 and with AVX2 kernels;
    a float32 step anywhere (~1e-8 of it) or a formula difference fails. (In float32 the two losses differ by
    ~1e-5 of the base loss, by an amount that depends on the CPU's kernels.)

    (Gradients are checked against the dense computation in the pooling test; ST 6.2's SpladePooling modifies
    its ReLU output in place, so its own backward pass fails outside its trainer.)"""
    from sentence_transformers.sparse_encoder.losses import SparseMarginMSELoss

    labels = torch.tensor(SCORES, dtype=torch.float64)
    ref = _st_losses(tiny_mlm, SparseMarginMSELoss, step, labels)
    q, d3 = _our_vectors(tiny_mlm)
    d = d3.reshape(20, -1)
    warm = max(1, int(TOTAL_STEPS / 3))
    ours = {
        "base_loss": margin_mse(q, d3, labels),
        "document_regularizer_loss": regularizer_weight(step, 0.3, warm) * flops(d),
        "query_regularizer_loss": regularizer_weight(step, 0.5, warm) * flops(q),
    }
    # FLOPS sums squares of means of non-negative weights: nothing cancels, the value is its own magnitude
    magnitude = {k: abs(float(v)) for k, v in ours.items()}
    magnitude["base_loss"] = _margin_mse_magnitude(q, d3, labels)
    assert set(ours) == set(ref)
    assert float(ref["base_loss"]) > 0.01 and float(flops(d)) > 0.01
    for k in ref:
        assert ours[k].dtype == ref[k].dtype == torch.float64, (k, ours[k].dtype, ref[k].dtype)
        assert abs(float(ours[k]) - float(ref[k])) <= 1e-12 * magnitude[k], (k, ours[k], ref[k], magnitude[k])
    # the card's rows carry margins only: the same loss from them
    target = labels[:, :1] - labels[:, 1:]
    assert abs(float(margin_mse(q, d3, target)) - float(ref["base_loss"])) <= 1e-12 * magnitude["base_loss"]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_listwise_kl_parity_with_sentence_transformers(tiny_mlm, temperature):
    """Listwise KL equals SpladeLoss(SparseDistillKLDivLoss(temperature)) on the same model and batch within 1e-5
    (both in float64: measured ~1e-15 apart), from the teacher's scores and from its margins alone.

    The teacher scores are spread ×20 so that the target is far from uniform at every temperature here, and a
    wrong temperature, reduction (sum, or mean over elements) or direction of the divergence fails by far more
    than the tolerance."""
    from sentence_transformers.sparse_encoder.losses import SparseDistillKLDivLoss

    from spladekit.train import distill_kl

    labels = torch.tensor(SCORES, dtype=torch.float64) * 20
    ref = _st_losses(tiny_mlm, lambda m: SparseDistillKLDivLoss(m, temperature=temperature), 25, labels)
    q, d3 = _our_vectors(tiny_mlm)
    ours = distill_kl(q, d3, labels, temperature)
    assert ours.dtype == ref["base_loss"].dtype == torch.float64
    assert float(ref["base_loss"]) > 0.05
    assert abs(float(ours) - float(ref["base_loss"])) <= 1e-5, (float(ours), float(ref["base_loss"]))
    # margins (positive minus each negative) define the same target distribution: no absolute scores needed
    from_margins = distill_kl(q, d3, labels[:, :1] - labels[:, 1:], temperature)
    assert abs(float(from_margins) - float(ref["base_loss"])) <= 1e-5
    # the check has teeth: the default temperature of the dense loss (1.0) or a plain mean would differ
    wrong = distill_kl(q, d3, labels, temperature * 2)
    assert abs(float(wrong) - float(ref["base_loss"])) > 1e-3


def test_regularizer_warmup_is_quadratic():
    assert regularizer_weight(0, 0.5, 10) == 0.0
    assert regularizer_weight(5, 0.5, 10) == pytest.approx(0.125)
    assert regularizer_weight(10, 0.5, 10) == 0.5
    assert regularizer_weight(5, 0.5, 10, "linear") == pytest.approx(0.25)


def test_info_nce_prefers_the_positive():
    from spladekit.train import info_nce

    q = torch.eye(3, 8)
    docs = torch.zeros(3, 2, 8)
    for i in range(3):
        docs[i, 0, i] = 5.0  # positive matches its query
        docs[i, 1, (i + 3) % 8] = 5.0
    good = info_nce(q, docs)
    bad = info_nce(q, docs.flip(1))
    assert float(good) < 0.05 < float(bad)
