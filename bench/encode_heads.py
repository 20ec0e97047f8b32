"""The fp32 vocabulary head, per layout, on this CPU: token-major blocks (``h @ W.T[:, block]``, max over rows) vs
vocabulary-major blocks (``W[block] @ h.T``, max along contiguous rows), same run, real hidden states.

Run from the repository root:  python bench/encode_heads.py [--docs 128] [--reps 5] [--threads 2]

Hidden states of the first N scifact documents (batches of 32 sorted by length, as the encoder makes them) go
through each head path; prints the median head-only documents/second, GFLOPS and the ratio. `pooling.head_layout`
picks the layout per CPU from these measurements; the outputs are checked equal first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from spladekit import SpladeEncoder
    from spladekit.encode import pooling

    torch.set_num_threads(args.threads)
    enc = SpladeEncoder.load(mode="fp32")
    docs = []
    with DATA.open() as f:
        for line in f:
            o = json.loads(line)
            docs.append((o["title"] + " " + o["text"]).strip())
            if len(docs) == args.docs:
                break
    ids, _ = enc._tokenize(docs, "document")
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = []
    with torch.inference_mode():
        for s in range(0, len(order), 32):
            chunk = [ids[i] for i in order[s : s + 32]]
            length = max(map(len, chunk))
            x = torch.zeros((len(chunk), length), dtype=torch.long)
            m = torch.zeros((len(chunk), length), dtype=torch.bool)
            for j, t in enumerate(chunk):
                x[j, : len(t)] = torch.tensor(t)
                m[j, : len(t)] = True
            batches.append((enc.hidden_states(x, m.long()).float(), m.sum(1).tolist()))
    w = enc.head_weight.detach().float().contiguous()
    wt = w.t().contiguous()
    paths = {
        "token-major 2048": lambda h, n: pooling.packed_max_logits(h, n, wt, 2048),
        "vocab-major 1024": lambda h, n: pooling.vocab_major_max_logits(h, n, w, 1024),
        "vocab-major 2048": lambda h, n: pooling.vocab_major_max_logits(h, n, w, 2048),
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    with torch.inference_mode():
        ref = [paths["token-major 2048"](h, n) for h, n in batches]
        for f in paths.values():
            for (h, n), r in zip(batches, ref):
                torch.testing.assert_close(f(h, n), r, rtol=1e-5, atol=1e-4)
        for _ in range(args.reps):  # alternate paths within each repetition: load drifts on shared machines
            for name, f in paths.items():
                t = time.perf_counter()
                for h, n in batches:
                    f(h, n)
                times[name].append(time.perf_counter() - t)
    tokens = sum(sum(n) for _, n in batches)
    flop = 2 * tokens * w.shape[1] * w.shape[0]
    base = statistics.median(times["token-major 2048"])
    print(
        f"{len(docs)} scifact documents ({tokens / len(docs):.0f} tokens each), {args.threads} threads, "
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}; head_layout() picks "
        f"{pooling.head_layout()!r}"
    )
    print(f"{'head path':<20}{'docs/s':>10}{'GFLOPS':>9}{'× token-major':>15}")
    for name, v in times.items():
        med = statistics.median(v)
        print(f"{name:<20}{len(docs) / med:>10.1f}{flop / med / 1e9:>9.1f}{base / med:>15.2f}")


if __name__ == "__main__":
    main()
