"""Encoding speed: spladekit against sentence-transformers' SparseEncoder on the same model, data and threads.

Run from the repository root:  python bench/encode.py [--docs 1000] [--reps 3] [--threads 2]

Encodes the first N documents of ../shared/data/scifact/corpus.jsonl ((title + " " + text).strip(), truncated at
512 tokens) with the bundled splade-tiny, alternating systems within each repetition, and prints the median
documents/second of each, the ratio to sentence-transformers, the fidelity of every mode against the fp32
reference (max |Δ| weight, identical active terms, identical top-10 terms), and peak memory at batch size 64
(each system in a fresh subprocess: peak RSS minus RSS after loading the model).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def load_docs(n: int) -> list[str]:
    docs = []
    with DATA.open() as f:
        for line in f:
            o = json.loads(line)
            docs.append((o["title"] + " " + o["text"]).strip())
            if len(docs) == n:
                break
    return docs


def st_model():
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    from spladekit.encode import bundled_model_path

    path = str(bundled_model_path())
    return SparseEncoder(modules=[MLMTransformer(path), SpladePooling(pooling_strategy="max")], device="cpu")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hwm_mb() -> float:
    """Peak resident memory of this process image (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(system: str, n: int, threads: int) -> None:
    """Run in a subprocess: load, then encode at batch 64; print peak RSS growth in MB as JSON."""
    import torch

    torch.set_num_threads(threads)
    docs = load_docs(n)
    if system == "st":
        m = st_model()
        base = rss_mb()
        m.encode_document(docs, batch_size=64)
    else:
        from spladekit import SpladeEncoder

        enc = SpladeEncoder.load(mode=system)
        enc.encode_documents(docs[:2])
        base = rss_mb()
        enc.encode_documents(docs, batch_size=64)
    peak = hwm_mb()  # not ru_maxrss: Linux carries it across exec from the forking parent
    print(json.dumps({"system": system, "base_mb": base, "peak_mb": peak, "delta_mb": peak - base}))


def top_terms(vecs, i: int, k: int = 10) -> set[int]:
    import numpy as np

    idx, val = vecs.row(i)
    order = np.argsort(-val, kind="stable")[:k]
    return set(idx[order].tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--memory-docs", type=int, default=256, help="documents encoded for the peak-memory probe"
    )
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_docs, args.threads)
        return
    if not DATA.is_file():
        sys.exit(f"needs {DATA} (the shared evaluation data)")

    import numpy as np
    import torch

    from spladekit import SpladeEncoder
    from spladekit.encode import cpu_supports_bf16

    torch.set_num_threads(args.threads)
    docs = load_docs(args.docs)
    st = st_model()
    enc = SpladeEncoder.load()
    modes = ["fp32", "exact", "fast"]
    print(
        f"{len(docs)} scifact documents, {args.threads} threads, batch {args.batch_size}, bf16 CPU: {cpu_supports_bf16()}"
    )
    enc.encode_documents(docs[:16])
    st.encode_document(docs[:16])
    times: dict[str, list[float]] = {"sentence-transformers": [], **{f"spladekit {m}": [] for m in modes}}
    outputs = {}
    for rep in range(args.reps):
        t = time.perf_counter()
        ref = st.encode_document(docs, batch_size=args.batch_size, convert_to_tensor=True)
        times["sentence-transformers"].append(time.perf_counter() - t)
        for m in modes:
            t = time.perf_counter()
            outputs[m] = enc.encode_documents(docs, batch_size=args.batch_size, mode=m)
            times[f"spladekit {m}"].append(time.perf_counter() - t)
        print(f"rep {rep + 1}: " + ", ".join(f"{k} {len(docs) / v[-1]:.1f} docs/s" for k, v in times.items()))
    tokens = enc.last_report.tokens
    st_rate = len(docs) / statistics.median(times["sentence-transformers"])
    print(
        f"\n{tokens / len(docs):.0f} tokens per document on average, {enc.last_report.truncated} truncated at 512"
    )
    print(f"{'system':<24}{'docs/s (median)':>16}{'× ST':>8}")
    for k, v in times.items():
        rate = len(docs) / statistics.median(v)
        print(f"{k:<24}{rate:>16.1f}{rate / st_rate:>8.2f}")

    ref_dense = ref.to_dense().numpy() if ref.is_sparse else ref.numpy()
    print("\nfidelity against sentence-transformers fp32 (all documents):")
    for m in modes:
        v = outputs[m]
        dense = v.to_dense()
        same_terms = np.mean(
            [np.array_equal(np.flatnonzero(dense[i]), np.flatnonzero(ref_dense[i])) for i in range(len(docs))]
        )
        ref_top = [set(np.argsort(-ref_dense[i], kind="stable")[:10].tolist()) for i in range(len(docs))]
        top10 = np.mean([top_terms(v, i) == ref_top[i] for i in range(len(docs))])
        print(
            f"  {m:<6} max|Δ| {np.abs(dense - ref_dense).max():.2e}  identical active terms {same_terms:.1%}  "
            f"identical top-10 terms {top10:.1%}"
        )

    if not args.skip_memory:
        print(f"\npeak memory at batch size 64 ({args.memory_docs} documents, fresh process each):")
        for system in ["st", "exact", "fast"]:
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--_memory-child",
                        system,
                        "--memory-docs",
                        str(args.memory_docs),
                        "--threads",
                        str(args.threads),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            name = "sentence-transformers" if system == "st" else f"spladekit {system}"
            print(
                f"  {name:<24} +{r['delta_mb']:.0f} MB over the loaded model (peak RSS {r['peak_mb']:.0f} MB)"
            )


if __name__ == "__main__":
    main()
