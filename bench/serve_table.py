"""Text queries through ``spladekit serve``: an inference-free (table) query side against the masked-LM one.

Both servers hold the same scifact documents (the bundled splade-tiny's vectors, the cached index of
``bench/serve.py``); one index records the bundled model (queries through the masked-LM, the server's query
batcher and torch encoder), the other an inference-free folder built from it with ``build_idf_table`` over the
corpus (queries are table lookups, inline, no torch). Real scifact test queries, the same load generator and
turns as ``bench/serve.py``, one run:

    python bench/serve_table.py [--clients 1,4,16] [--seconds 12] [--workers N] [--hybrid]

``--hybrid`` adds a third server row: the table index answering ``"hybrid": "rrf"`` (BM25 fused in).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import _http_load
from _serve_load import free_port, start_server, wait_for_workers
from serve import build_index, level, merge

ROOT = Path(__file__).resolve().parent
DATA = Path("../shared/data")


def table_index(base, path: Path, texts: dict[str, str]):
    """The base index's documents under an inference-free model (IDF over the corpus); built once."""
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.lite import load_lite
    from spladekit.encode.st_folder import save_inference_free
    from spladekit.index import Index

    if (path / "index" / "manifest.json").is_file():
        return path / "index"
    lite = load_lite()
    table, _ = build_idf_table(lite, texts=texts.values())
    model = save_inference_free(lite, table, path / "model", overwrite=True)
    with Index.create(path / "index", str(model)) as idx:
        for b in base.iter_documents():
            idx.add_vectors(b.ids, b.vectors, [texts[i] for i in b.ids])
        idx.commit()
    return path / "index"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA / "scifact")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the masked-LM server")
    ap.add_argument("--workers", type=int, default=None, help="--workers of both servers (default: theirs)")
    ap.add_argument("--hybrid", action="store_true", help="also the table server answering hybrid (rrf)")
    args = ap.parse_args()
    args.client = "raw"
    corpus = args.data / "corpus.jsonl"
    if not corpus.is_file():
        raise SystemExit(f"{corpus}: not found (run from the repository root; needs ../shared/data)")
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / ".gitignore").write_text("*\n")
    from spladekit.data import load_beir

    beir = load_beir(args.data, "test")
    queries = [q.text for q in beir.judged_queries().values()]
    base = build_index(corpus, args.cache / f"{args.data.name}-index")
    tpath = table_index(
        base, args.cache / f"{args.data.name}-table", {d: r.full_text for d, r in beir.corpus.items()}
    )
    base.close()
    bodies = [{"query": t, "k": args.k} for t in queries]
    plan = {"mlm": (args.cache / f"{args.data.name}-index", bodies), "table": (tpath, bodies)}
    if args.hybrid:
        plan["table hybrid"] = (tpath, [{**b, "hybrid": "rrf"} for b in bodies])
    servers, results = {}, []
    load_start = os.getloadavg()
    try:
        for name, (path, _) in plan.items():
            port = free_port()
            servers[name] = (start_server(path, port, args.threads, workers=args.workers), port)
            if args.workers and args.workers > 1:
                wait_for_workers(port, args.workers)
        requests = {n: _http_load.prepare("/search", b) for n, (_, b) in plan.items()}
        for n, (_, port) in servers.items():  # warm-up: numba, page cache, every worker
            level(args, port, plan[n][1], requests[n], 8, 200, 10)
        names = list(servers)
        for c in [int(x) for x in args.clients.split(",")]:
            parts: dict[str, list] = {n: [] for n in names}
            for r in range(args.rounds):
                for n in names[r % len(names) :] + names[: r % len(names)]:
                    port = servers[n][1]
                    parts[n].append(
                        level(
                            args,
                            port,
                            plan[n][1],
                            requests[n],
                            c,
                            args.requests // args.rounds,
                            args.seconds / args.rounds,
                        )
                    )
            results.append((c, {n: merge(p) for n, p in parts.items()}))
            print(f"  {c} clients done", file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    print(
        f"\nspladekit serve, text queries: {args.data.name} ({len(queries)} test queries), k={args.k}, "
        f"{os.cpu_count()} CPUs shared by clients and servers, workers {args.workers or 'default'}, "
        f"torch threads {args.threads}; load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    head = f"{'clients':>7}" + "".join(f" | {n + ' req/s':>18} {'p50 ms':>7} {'p99 ms':>7}" for n in names)
    print(head + " | table/mlm req/s")
    for c, res in results:
        line = f"{c:>7}" + "".join(
            f" | {res[n]['rps']:>18.1f} {res[n]['p50_ms']:>7.2f} {res[n]['p99_ms']:>7.2f}" for n in names
        )
        errors = sum(res[n]["errors"] for n in names)
        print(
            line
            + f" | x{res['table']['rps'] / res['mlm']['rps']:.2f}"
            + (f"  ({errors} errors)" if errors else "")
        )


if __name__ == "__main__":
    main()
