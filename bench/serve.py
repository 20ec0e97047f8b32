"""Load test of ``spladekit serve``: requests/s and p50/p99 latency of POST /search at several client counts.

Builds (once; cached in bench/.cache/) an index of the scifact corpus with the bundled model, starts
``spladekit serve`` on 127.0.0.1 in a subprocess, and runs bounded loads (at most --requests requests and
--seconds seconds per level) of real scifact test queries from 1, 4 and 16 concurrent keep-alive clients. The
reference, run in the same process on the same index and queries, is the in-process ``Index.search`` call
without HTTP, so the ratio shows what the HTTP layer costs. Only loopback traffic.

    python bench/serve.py [--clients 1,4,16] [--requests 400] [--seconds 20] [--mode text|vector|both]

``--load 60`` instead holds a load: 16 clients search for 60 s while two HTTP writers and a writer in another
process add documents; then every acknowledged write is looked for in the reopened index (bench/_serve_load.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from _serve_load import free_port, run_load, server_log, start_server, verify

ROOT = Path(__file__).resolve().parent
DATA = Path("../shared/data")


def build_index(corpus: Path, path: Path):
    from spladekit.data import read_records
    from spladekit.index import Index

    records = list(read_records(corpus))
    if (path / "manifest.json").is_file():
        idx = Index.open(path)
        if len(idx) == len(records):
            return idx
        idx.close()
        import shutil

        shutil.rmtree(path)
    print(f"building the index of {len(records)} documents in {path} (once) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    idx = Index.create(path)
    try:  # the search benchmark's cache of the same corpus encoded by the same bundled model, when present
        sys.path.insert(0, str(ROOT))
        from _search_data import encoded

        vectors = encoded(corpus.parent.name, "corpus", idx.encoder)
        idx.add_vectors([r.id for r in records], vectors, [r.full_text for r in records])
    except ImportError:
        for s in range(0, len(records), 512):
            part = records[s : s + 512]
            idx.add([r.id for r in part], [r.full_text for r in part], batch_size=32)
            print(f"  {s + len(part)}/{len(records)} encoded", file=sys.stderr, flush=True)
    idx.commit()
    print(f"built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return idx


def run_level(base: str, bodies: list[dict], clients: int, max_requests: int, max_seconds: float) -> dict:
    """``clients`` threads, each with its own keep-alive connection, share a budget of requests and time."""
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds

    def worker():
        with httpx.Client(base_url=base, timeout=60) as c:
            while True:
                with lock:
                    i = state["next"]
                    if i >= max_requests or time.perf_counter() > deadline:
                        return
                    state["next"] = i + 1
                t = time.perf_counter()
                try:
                    r = c.post("/search", json=bodies[i % len(bodies)])
                except httpx.TransportError as e:
                    with lock:
                        errors.append(f"transport error: {e!r}")
                    continue
                dt = time.perf_counter() - t
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt)
                    else:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": wall,
        "rps": len(latencies) / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }


def in_process(idx, queries, k: int, max_requests: int, max_seconds: float) -> dict:
    """Reference: the same searches as direct calls, one at a time, no HTTP."""
    times = []
    deadline = time.perf_counter() + max_seconds
    for i in range(max_requests):
        if time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        idx.search(queries[i % len(queries)], k=k)
        times.append(time.perf_counter() - t)
    lat = np.asarray(times) * 1000
    return {
        "requests": len(times),
        "rps": len(times) / sum(times),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def load_held(args, idx, bodies: list[dict], corpus: Path) -> None:
    """Issue 16's row 7: 16 clients search for ``--load`` seconds while writers add documents; first the same
    clients without writers (the reference p99), then with them; then every acknowledged write is looked for."""
    import tempfile

    from spladekit.data import read_records
    from spladekit.index.local.snapshot import snapshot

    write_texts = [r.full_text for r in read_records(corpus)]
    enc = idx.encoder
    src = Path(idx.path)
    idx.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        snapshot(src, path, link=False)  # the cached index stays as it is
        port = free_port()
        proc = start_server(path, port, args.threads)
        base = f"http://127.0.0.1:{port}"
        try:
            run_level(base, bodies, 2, 20, 10)  # warm-up
            alone = run_load(
                base, bodies, write_texts, clients=args.load_clients, http_writers=0, seconds=args.load / 2
            )
            held = run_load(
                base,
                bodies,
                write_texts,
                clients=args.load_clients,
                http_writers=args.writers,
                seconds=args.load,
                direct_index_path=None if args.no_direct_writer else path,
                encoder=enc,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log = server_log(proc)
        check = verify(path, held.acked, enc)
    a, h = alone.summary(), held.summary()
    print(
        f"\nload held on 127.0.0.1: {args.data.name} index ({check['documents'] - check['acked']} docs at start), "
        f"{args.load_clients} search clients, {args.writers} HTTP writers + "
        f"{0 if args.no_direct_writer else 1} other-process writer, 4 documents a write; "
        f"{os.cpu_count()} CPUs shared by all; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':26} {'seconds':>7} {'searches':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for name, r in (("searches alone", a), ("searches while writing", h)):
        print(
            f"{name:26} {r['seconds']:>7.1f} {r['searches']:>8} {r['search_rps']:>7.1f} {r['search_p50_ms']:>7.2f} "
            f"{r['search_p99_ms']:>7.2f} {r['search_errors']:>6}"
        )
    print(
        f"writes: {h['writes_acked']} documents acknowledged, write p50 {h['write_p50_ms']:.1f} ms / p99 "
        f"{h['write_p99_ms']:.1f} ms, {h['write_errors']} write errors, {h['read_your_write_misses']} "
        f"read-your-write misses; search p99 while writing / alone: x{h['search_p99_ms'] / a['search_p99_ms']:.2f}"
    )
    print(
        f"afterwards (server stopped, index reopened): {check['documents']} documents; acknowledged "
        f"{check['acked']}, lost {check['lost']}, wrong text {check['wrong_text']}; {check['searched']} searched "
        f"by their text, {check['not_found_by_search']} not in the top 10; check --deep "
        f"{'ok' if check['check_ok'] else check['check_problems']}"
    )
    if h["first_errors"] or a["first_errors"] or check["examples"]:
        print("first errors:", a["first_errors"] + h["first_errors"], "examples:", check["examples"])
    if "Traceback" in log:
        print("server log has a traceback:", log[-2000:])
    if args.json:
        args.json.write_text(json.dumps({"alone": a, "held": h, "verify": check}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "scifact")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=400, help="most requests per level")
    ap.add_argument("--seconds", type=float, default=20.0, help="most seconds per level")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--mode", choices=["text", "vector", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and the reference")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--load", type=float, default=0, help="instead: hold a load this many seconds with writers"
    )
    ap.add_argument("--load-clients", type=int, default=16, help="search clients of --load")
    ap.add_argument("--writers", type=int, default=2, help="HTTP writers of --load (4 documents a request)")
    ap.add_argument("--no-direct-writer", action="store_true", help="--load without the other-process writer")
    args = ap.parse_args()

    corpus = args.data / "corpus.jsonl"
    if not corpus.is_file():
        raise SystemExit(f"{corpus}: not found (run from the repository root; needs ../shared/data)")
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / ".gitignore").write_text("*\n")
    import torch

    from spladekit.data import load_beir

    torch.set_num_threads(args.threads)  # the in-process reference encodes with the server's setting
    beir = load_beir(args.data, "test")
    texts = [q.text for q in beir.judged_queries().values()]
    idx = build_index(corpus, args.cache / f"{args.data.name}-index")
    n_docs = len(idx)
    enc = idx.encoder
    qvec = enc.encode_queries(texts)
    modes = ["text", "vector"] if args.mode == "both" else [args.mode]
    bodies = {
        "text": [{"query": t, "k": args.k} for t in texts],
        "vector": [
            {"vector": {"indices": r[0].tolist(), "values": r[1].tolist()}, "k": args.k} for r in qvec
        ],
    }
    ref_queries = {"text": texts, "vector": [qvec[i] for i in range(len(qvec))]}
    if args.load:
        load_held(args, idx, bodies["text" if args.mode != "vector" else "vector"], corpus)
        return
    for mode in modes:  # warm the in-process path (numba compile, page cache)
        in_process(idx, ref_queries[mode], args.k, 20, 5)

    load_start = os.getloadavg()
    port = free_port()
    proc = start_server(args.cache / f"{args.data.name}-index", port, args.threads)
    base = f"http://127.0.0.1:{port}"
    results = []
    try:
        for mode in modes:
            run_level(base, bodies[mode], 2, 20, 10)  # warm-up: numba compile, connections
            for c in [int(x) for x in args.clients.split(",")]:
                # The reference runs right before each level: this machine is shared, so load drifts.
                ref = in_process(idx, ref_queries[mode], args.k, args.requests, args.seconds / 2)
                r = run_level(base, bodies[mode], c, args.requests, args.seconds)
                r.update(mode=mode, reference=ref)
                results.append(r)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        idx.close()

    load = os.getloadavg()
    print(
        f"\nspladekit serve on 127.0.0.1: {args.data.name} ({n_docs} docs, {len(texts)} test queries), k={args.k}, "
        f"{os.cpu_count()} CPUs shared by clients and server; per level <= {args.requests} requests / "
        f"{args.seconds:.0f} s; torch threads {args.threads}; load average at start {load_start[0]:.1f}, at end {load[0]:.1f}"
    )
    print(
        f"{'query':7} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" | in-process: {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} | HTTP/in-process req/s"
    )
    for r in results:
        rf = r["reference"]
        print(
            f"{r['mode']:7} {r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['rps']:>8.1f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} |             {rf['rps']:>8.1f} {rf['p50_ms']:>7.2f} "
            f"{rf['p99_ms']:>7.2f} | x{r['rps'] / rf['rps']:.2f}"
        )
    print(
        "in-process = the same searches as direct Index.search calls (one thread, no HTTP), run just before each "
        "level; text = query encoded by the server, vector = pre-encoded {indices, values}"
    )
    if any(r["errors"] for r in results):
        print("errors:", [r["first_error"] for r in results if r["errors"]])
    if args.json:
        args.json.write_text(json.dumps({"levels": results}, indent=1))


if __name__ == "__main__":
    main()
