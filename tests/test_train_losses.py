"""Training maths: the arg-max pooling equals the full computation; losses equal sentence-transformers'."""

from __future__ import annotations

import pytest
import torch

from spladekit.train import flops, margin_mse, naive_max_pool, regularizer_weight, splade_max_pool

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


@pytest.mark.parametrize("screen", [False, True])
def test_argmax_pool_equals_full_computation(tiny_mlm, screen):
    """Values and gradients (hidden states, head weight, bias) of the sparse pooling equal the dense B×L×V one."""
    from spladekit import SpladeEncoder

    enc = SpladeEncoder.load(tiny_mlm, mode="fp32")
    dtype = torch.float32 if screen else torch.float64
    enc.model.to(dtype)
    texts = [d for ds in DOCS for d in ds][:8]
    hidden, mask = _hidden(enc, texts)
    w = enc.head_weight.detach().clone().requires_grad_(True)
    b = enc.head_bias.detach().clone().requires_grad_(True)
    g = torch.randn(len(texts), w.shape[0], dtype=dtype)

    def run(fn, **kw):
        h = hidden.detach().clone().requires_grad_(True)
        for t in (w, b):
            t.grad = None
        out = fn(h, mask, w, b, **kw)
        (out * g).sum().backward()
        return out.detach(), h.grad, w.grad.clone(), b.grad.clone()

    fast = run(splade_max_pool, screen=screen)
    ref = run(naive_max_pool)
    assert (ref[0] > 0).sum() > 100, "the tiny model must have active terms for this test to mean anything"
    tol = 1e-5 if screen else 1e-10
    for a, r in zip(fast, ref):
        assert torch.allclose(a, r, atol=tol, rtol=tol), float((a - r).abs().max())


def _st_model(path):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(path), device="cpu").eval()


@pytest.mark.parametrize("step", [0, 3, 10, 25])
def test_loss_parity_with_sentence_transformers(tiny_mlm, step):
    """margin-MSE and both FLOPS terms equal SpladeLoss(SparseMarginMSELoss, 0.5, 0.3) at the same warm-up state.

    (Gradients are checked against the dense computation in the pooling test; ST 6.2's SpladePooling modifies
    its ReLU output in place, so its own backward pass fails outside its trainer.)"""
    from sentence_transformers.sparse_encoder.callbacks import SpladeRegularizerWeightSchedulerCallback
    from sentence_transformers.sparse_encoder.losses import SparseMarginMSELoss, SpladeLoss
    from transformers import TrainerState

    from spladekit import SpladeEncoder
    from spladekit.train.trainer import _Batcher, encode_for_training

    st = _st_model(tiny_mlm)
    loss_fn = SpladeLoss(
        st, SparseMarginMSELoss(st), query_regularizer_weight=0.5, document_regularizer_weight=0.3
    )
    total_steps = 30
    cb = SpladeRegularizerWeightSchedulerCallback(loss_fn)
    state = TrainerState(max_steps=total_steps, global_step=step)
    cb.on_train_begin(None, state, None)
    cb.on_step_begin(None, state, None)
    columns = [QUERIES] + [[d[j] for d in DOCS] for j in range(5)]
    features = [st.preprocess(c) for c in columns]
    labels = torch.tensor(SCORES)
    with torch.no_grad():
        ref = loss_fn(features, labels)

    enc = SpladeEncoder.load(tiny_mlm, mode="fp32")
    enc.model.eval()
    batcher = _Batcher(enc, torch.device("cpu"))
    flat = [t for ds in DOCS for t in ds]
    with torch.no_grad():
        q = encode_for_training(enc, batcher, QUERIES, "query", 512, 64, None, False)
        d = encode_for_training(enc, batcher, flat, "document", 512, 64, None, False)
    warm = max(1, int(total_steps / 3))
    ours = {
        "base_loss": margin_mse(q, d.view(4, 5, -1), labels),
        "document_regularizer_loss": regularizer_weight(step, 0.3, warm) * flops(d),
        "query_regularizer_loss": regularizer_weight(step, 0.5, warm) * flops(q),
    }
    assert set(ours) == set(ref)
    assert float(ref["base_loss"]) > 0.01 and float(flops(d)) > 0.01
    for k in ref:
        assert abs(float(ours[k]) - float(ref[k])) <= 1e-5 * max(1.0, abs(float(ref[k]))), (
            k,
            ours[k],
            ref[k],
        )


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
