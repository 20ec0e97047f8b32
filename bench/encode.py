"""Encoding speed: spladekit against sentence-transformers' SparseEncoder on the same model, data and threads.

Run from the repository root:  python bench/encode.py [--docs 1000] [--reps 3] [--threads 2]

Encodes the first N documents of ../shared/data/scifact/corpus.jsonl ((title + " " + text).strip(), truncated at
512 tokens: spladekit is asked for ``long_docs="truncate"``, as its default windows longer documents) with the
bundled splade-tiny, alternating systems within each repetition, and prints the median
documents/second of each, the ratio to sentence-transformers, the fidelity of every mode against the fp32
reference (max |Δ| weight, identical active terms, identical top-10 terms), and peak memory at batch size 64
(each system in a fresh subprocess: peak RSS minus RSS after loading the model).

Systems: sentence-transformers with its torch backend (the reference) and, where it can run, its ``backend="onnx"``
(optimum exports the model on the fly); spladekit's modes; and spladekit's own ONNX export
(``spladekit export-model``, pooling inside the graph) run by ``OnnxEncoder`` on onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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


def st_model(backend: str = "torch"):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    from spladekit.encode import bundled_model_path

    path = str(bundled_model_path())
    mlm = MLMTransformer(path, backend=backend)
    return SparseEncoder(modules=[mlm, SpladePooling(pooling_strategy="max")], device="cpu")


def st_onnx_model():
    """sentence-transformers with ``backend="onnx"``, or (None, why it cannot run here)."""
    try:
        m = st_model("onnx")
        m.encode_document(["warm up"])
        return m, None
    except Exception as e:  # noqa: BLE001 - any failure means: skip this row, say why
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        import importlib.util

        if importlib.util.find_spec("optimum") is None:
            import transformers

            why += (
                f" [optimum-onnx, which it needs, requires transformers<4.58 (its latest release, 0.1.0); "
                f"sentence-transformers here requires >=5 and this environment has {transformers.__version__}]"
            )
        return None, why


def st_onnx_by_hand(folder: Path, threads: int):
    """The steps of sentence-transformers' onnx backend (see ``_st_onnx``), for where it cannot install."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _st_onnx import MlmOnnxReference

    from spladekit.encode import bundled_model_path

    return MlmOnnxReference(str(bundled_model_path()), folder, threads)


def export_onnx_model(folder: Path) -> Path:
    """The bundled model exported by ``spladekit export-model`` into ``folder``; returns the folder."""
    from spladekit.encode.onnx_export import export_onnx

    out = folder / "splade-tiny-onnx"
    export_onnx(None, out)
    return out


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


def memory_child(system: str, n: int, threads: int, onnx_dir: str | None = None) -> None:
    """Run in a subprocess: load, then encode at batch 64; print peak RSS growth in MB as JSON."""
    docs = load_docs(n)
    if system == "onnx":  # no torch in this process: onnxruntime only
        from spladekit.encode.onnx_encoder import load_onnx

        # no warm-up encode: onnxruntime's arena keeps what a run allocated, so it would hide in the baseline
        enc = load_onnx(onnx_dir, threads=threads)  # (the load itself runs a 2-token text)
        base = rss_mb()
        enc.encode_documents(docs, batch_size=64, long_docs="truncate")
        peak = hwm_mb()
        print(json.dumps({"system": system, "base_mb": base, "peak_mb": peak, "delta_mb": peak - base}))
        return
    import torch

    torch.set_num_threads(threads)
    if system in ("st", "st-onnx"):
        m = st_model("torch") if system == "st" else st_onnx_model()[0]
        if m is None:
            m = st_onnx_by_hand(Path(tempfile.mkdtemp(prefix="bench-encode-st-onnx-")), threads)
        base = rss_mb()
        m.encode_document(docs, batch_size=64)
    else:
        from spladekit import SpladeEncoder

        enc = SpladeEncoder.load(mode=system)
        enc.encode_documents(docs[:2], long_docs="truncate")
        base = rss_mb()
        enc.encode_documents(docs, batch_size=64, long_docs="truncate")
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
    ap.add_argument("--_onnx-dir", dest="onnx_dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_docs, args.threads, args.onnx_dir)
        return
    if not DATA.is_file():
        sys.exit(f"needs {DATA} (the shared evaluation data)")

    import numpy as np
    import torch

    from spladekit import SpladeEncoder
    from spladekit.encode import cpu_supports_bf16
    from spladekit.encode.onnx_encoder import MODEL_FILE, load_onnx

    torch.set_num_threads(args.threads)
    docs = load_docs(args.docs)
    st = st_model()
    enc = SpladeEncoder.load()
    tmp = tempfile.TemporaryDirectory(prefix="bench-encode-onnx-")
    t = time.perf_counter()
    onnx_dir = export_onnx_model(Path(tmp.name))
    onnx_mb = (onnx_dir / MODEL_FILE).stat().st_size / 1e6
    print(f"spladekit export-model: {onnx_mb:.1f} MB model.onnx in {time.perf_counter() - t:.1f} s")
    onnx_enc = load_onnx(onnx_dir, threads=args.threads)
    st_onnx, why = st_onnx_model()
    st_onnx_name = "sentence-transformers onnx"
    if st_onnx is None:
        st_onnx = st_onnx_by_hand(Path(tmp.name), args.threads)
        st_onnx_name = "ST onnx steps (by hand)"
        print(
            f"sentence-transformers onnx backend cannot run here ({why}); in its place the same steps by hand "
            "(bench/_st_onnx.py: the masked-LM exported with logits out, onnxruntime, sentence-transformers' "
            "SpladePooling)"
        )
    modes = ["fp32", "exact", "fast"]
    for m in modes:
        print(f"spladekit {m} runs: {enc.compute_path(m)}")
    print(
        f"{len(docs)} scifact documents, {args.threads} threads, batch {args.batch_size}, bf16 CPU: {cpu_supports_bf16()}"
    )
    enc.encode_documents(docs[:16], long_docs="truncate")
    st.encode_document(docs[:16])
    onnx_enc.encode_documents(docs[:16], long_docs="truncate")
    st_onnx.encode_document(docs[:16])
    times: dict[str, list[float]] = {"sentence-transformers": []}
    times[st_onnx_name] = []
    times.update({f"spladekit {m}": [] for m in [*modes, "onnx"]})
    outputs = {}
    for rep in range(args.reps):
        t = time.perf_counter()
        ref = st.encode_document(docs, batch_size=args.batch_size, convert_to_tensor=True)
        times["sentence-transformers"].append(time.perf_counter() - t)
        t = time.perf_counter()
        outputs["st-onnx"] = st_onnx.encode_document(docs, batch_size=args.batch_size)
        times[st_onnx_name].append(time.perf_counter() - t)
        for m in modes:
            t = time.perf_counter()
            outputs[m] = enc.encode_documents(docs, batch_size=args.batch_size, mode=m, long_docs="truncate")
            times[f"spladekit {m}"].append(time.perf_counter() - t)
        t = time.perf_counter()
        outputs["onnx"] = onnx_enc.encode_documents(docs, batch_size=args.batch_size, long_docs="truncate")
        times["spladekit onnx"].append(time.perf_counter() - t)
        print(f"rep {rep + 1}: " + ", ".join(f"{k} {len(docs) / v[-1]:.1f} docs/s" for k, v in times.items()))
    tokens = enc.last_report.tokens
    st_rate = len(docs) / statistics.median(times["sentence-transformers"])
    print(
        f"\n{tokens / len(docs):.0f} tokens per document on average, {enc.last_report.truncated} truncated at 512"
    )
    print(f"{'system':<28}{'docs/s (median)':>16}{'× ST':>8}")
    for k, v in times.items():
        rate = len(docs) / statistics.median(v)
        print(f"{k:<28}{rate:>16.1f}{rate / st_rate:>8.2f}")
    graph = "onnxruntime-optimised" if onnx_enc.meta["optimized"] else "portable (standard ops)"
    print(f"(spladekit onnx: {onnx_mb:.1f} MB model.onnx, {graph} graph, {onnx_enc.meta['exporter']})")

    ref_dense = ref.to_dense().numpy() if ref.is_sparse else ref.numpy()
    print("\nfidelity against sentence-transformers fp32 (all documents):")
    for m in [*modes, "onnx"]:
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
    if "st-onnx" in outputs:
        st_onnx_dense = outputs["st-onnx"].to_dense().numpy()
        print(f"  {st_onnx_name} max|Δ| {np.abs(st_onnx_dense - ref_dense).max():.2e}")
    print(
        f"  spladekit onnx against spladekit fp32: max|Δ| "
        f"{np.abs(outputs['onnx'].to_dense() - outputs['fp32'].to_dense()).max():.2e}"
    )

    if not args.skip_memory:
        print(f"\npeak memory at batch size 64 ({args.memory_docs} documents, fresh process each):")
        names = {
            "st": "sentence-transformers",
            "st-onnx": "sentence-transformers onnx",
            "onnx": "spladekit onnx",
        }
        names["st-onnx"] = st_onnx_name
        for system in ["st", "st-onnx", "exact", "fast", "onnx"]:
            name = names.get(system, f"spladekit {system}")
            p = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_memory-child",
                    system,
                    "--memory-docs",
                    str(args.memory_docs),
                    "--threads",
                    str(args.threads),
                    "--_onnx-dir",
                    str(onnx_dir),
                ],
                capture_output=True,
                text=True,
            )
            if (
                p.returncode != 0
            ):  # e.g. the full batch × length × vocabulary logits do not fit: say so, go on
                why = "killed (out of memory?)" if p.returncode < 0 else f"exit {p.returncode}"
                print(f"  {name:<24} failed: {why}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(
                f"  {name:<24} +{r['delta_mb']:.0f} MB over the loaded model (peak RSS {r['peak_mb']:.0f} MB)"
            )


if __name__ == "__main__":
    main()
