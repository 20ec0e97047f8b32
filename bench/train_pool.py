"""Training-step pooling: dense B×L×V SPLADE max pooling (what sentence-transformers does) against spladekit's
arg-max recomputation (fp32 pass, and bf16 screen + fp32 recheck), forward + backward, on real SciFact text.

    python bench/train_pool.py [--docs 32] [--max-length 256] [--repeats 3]

Prints the median seconds of each, the ratio to the dense reference, and the largest gradient difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from spladekit import SpladeEncoder
from spladekit.encode import cpu_supports_bf16
from spladekit.train import naive_max_pool, splade_max_pool

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    texts = []
    with DATA.open() as f:
        for line in f:
            o = json.loads(line)
            texts.append((o["title"] + " " + o["text"]).strip())
            if len(texts) == args.docs:
                break
    enc = SpladeEncoder.load(mode="fp32")
    tok = enc.tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
    with torch.no_grad():
        hidden0 = enc.hidden_states(tok["input_ids"], tok["attention_mask"])
    mask = tok["attention_mask"].bool()
    w0, b0 = enc.head_weight.detach(), enc.head_bias.detach()
    g = torch.randn(len(texts), w0.shape[0])

    def step(fn, **kw):
        h = hidden0.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        t0 = time.perf_counter()
        out = fn(h, mask, w, b, **kw)
        ((out * g).sum() + out.mean(0).pow(2).sum()).backward()
        return time.perf_counter() - t0, out.detach(), h.grad

    systems = {"dense (reference)": (naive_max_pool, {}), "argmax fp32": (splade_max_pool, {})}
    if cpu_supports_bf16():
        systems["argmax bf16 screen"] = (splade_max_pool, {"screen": True})
    results = {}
    for name, (fn, kw) in systems.items():
        times = []
        for _ in range(args.repeats):
            t, out, grad = step(fn, **kw)
            times.append(t)
        results[name] = (statistics.median(times), out, grad)
    ref_t, ref_out, ref_grad = results["dense (reference)"]
    n_tok = int(mask.sum())
    print(
        f"{len(texts)} SciFact documents, {n_tok} tokens (max_length {args.max_length}), splade-tiny, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"dense logits tensor: {len(texts) * mask.shape[1] * w0.shape[0] * 4 / 2**20:.0f} MiB per copy")
    for name, (t, out, grad) in results.items():
        print(
            f"{name:22s} {t:7.2f} s  x{ref_t / t:5.2f} vs dense   max |Δvalue| {float((out - ref_out).abs().max()):.1e}"
            f"   max |Δgrad| {float((grad - ref_grad).abs().max()):.1e}"
        )


if __name__ == "__main__":
    main()
