"""Load test of ``spladekit serve``: requests/s and p50/p99 latency of POST /search at several client counts.

Builds (once; cached in bench/.cache/) an index of the scifact corpus with the bundled model, starts
``spladekit serve`` on 127.0.0.1 in a subprocess, and runs bounded loads (at most --requests requests and
--seconds seconds per level and server) of real scifact test queries from 1, 4 and 16 concurrent keep-alive clients. The
reference, run in the same process on the same index and queries, is the in-process ``Index.search`` call
without HTTP, so the ratio shows what the HTTP layer costs. Only loopback traffic.

    python bench/serve.py [--clients 1,4,16] [--seconds 12] [--rounds 4] [--mode text|vector|both]
                          [--baseline aad7211] [--workers N] [--also-workers 1] [--client raw|httpx]

``--baseline REF`` also serves the same index with the server of an earlier commit (its ``src/`` exported with
``git archive`` into bench/.cache/, run with PYTHONPATH pointing there) and runs every level against both, one
right after the other, so the table shows baseline and new from the same run on the same machine load; ``--also-workers 1`` adds the
new server with another worker count (what the per-request work gains apart from the extra processes).
The clients are asyncio keep-alive connections in this process (``_http_load``: a few tens of microseconds of
CPU per request, reported per level); ``--client httpx`` uses a thread per client with httpx instead.

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

import _http_load
import httpx
import numpy as np
from _serve_load import (
    baseline_src,
    free_port,
    run_load,
    server_log,
    start_server,
    verify,
    wait_for_workers,
)

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


def run_level_httpx(
    base: str, bodies: list[dict], clients: int, max_requests: int, max_seconds: float
) -> dict:
    """``clients`` threads, each with its own keep-alive httpx connection, share a budget of requests and time
    (the load generator of earlier runs; ``--client httpx``)."""
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

    t0, cpu0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
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
        "client_cpu_us": 1e6 * cpu / max(1, len(latencies) + len(errors)),
        "latencies_ms": lat.tolist(),
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
        proc = start_server(path, port, args.threads, workers=args.workers)
        base = f"http://127.0.0.1:{port}"
        try:
            run_level_httpx(base, bodies, 2, 20, 10)  # warm-up
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


def measure(args, idx, bodies: dict, ref_queries: dict, modes: list[str]) -> list[dict]:
    """Every level against the baseline server (when asked) and the new one(s), in ``--rounds`` rounds of
    short slices taking turns, so that a change in the machine's load falls on all of them alike."""
    index_path = args.cache / f"{args.data.name}-index"
    servers: dict[str, tuple] = {}
    try:
        if args.baseline:
            port = free_port()
            src = baseline_src(args.baseline, args.cache)
            servers["baseline"] = (start_server(index_path, port, args.threads, src=src), port)
        port = free_port()
        servers["new"] = (start_server(index_path, port, args.threads, workers=args.workers), port)
        from spladekit.serve.workers import default_workers

        workers = args.workers or default_workers(index_path)
        if workers > 1:
            ready = wait_for_workers(port, workers)
            print(f"new server: {ready} of {workers} workers answering", file=sys.stderr)
        if args.also_workers:  # the new server with another worker count: what the processes add
            port, w = free_port(), args.also_workers
            servers[f"new w{w}"] = (start_server(index_path, port, args.threads, workers=w), port)
            if w > 1:
                wait_for_workers(port, w)
        names = list(servers)
        results = []
        for mode in modes:
            requests = _http_load.prepare("/search", bodies[mode])
            for _, port in servers.values():  # warm-up: numba compile, page cache, every worker
                level(args, port, bodies[mode], requests, 8, 200, 10)
            for c in [int(x) for x in args.clients.split(",")]:
                # The reference runs right before each level: this machine is shared, so load drifts.
                ref = in_process(idx, ref_queries[mode], args.k, args.requests, args.seconds / 2)
                parts: dict[str, list[dict]] = {n: [] for n in names}
                n_req, secs = args.requests // args.rounds, args.seconds / args.rounds
                for r in range(args.rounds):
                    for name in names[r % len(names) :] + names[: r % len(names)]:  # who goes first rotates
                        port = servers[name][1]
                        parts[name].append(level(args, port, bodies[mode], requests, c, n_req, secs))
                results.append(
                    {"mode": mode, "clients": c, "reference": ref} | {n: merge(parts[n]) for n in names}
                )
                print(f"  {mode} {c} clients done", file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    return results


def merge(parts: list[dict]) -> dict:
    """One level's figures from its slices: requests/s over their time together, percentiles over all latencies."""
    lat = np.concatenate([np.asarray(p["latencies_ms"]) for p in parts])
    n, errors, wall = (sum(p[k] for p in parts) for k in ("requests", "errors", "seconds"))
    cpu = sum(p["client_cpu_us"] * (p["requests"] + p["errors"]) for p in parts)
    return {
        "clients": parts[0]["clients"],
        "requests": n,
        "errors": errors,
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
        "seconds": wall,
        "rps": n / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if n else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if n else float("nan"),
        "client_cpu_us": cpu / max(1, n + errors),
    }


def level(args, port: int, bodies: list[dict], requests: list[bytes], clients: int, n: int, secs: float):
    if args.client == "httpx":
        return run_level_httpx(f"http://127.0.0.1:{port}", bodies, clients, n, secs)
    return _http_load.run_level("127.0.0.1", port, requests, clients, n, secs, expect=b'{"hits":')


def report(args, results: list[dict], n_docs: int, n_queries: int, load_start, load_end) -> None:
    names = [n for n in results[0] if n not in ("mode", "clients", "reference")]
    print(
        f"\nspladekit serve on 127.0.0.1: {args.data.name} ({n_docs} docs, {n_queries} test queries), k={args.k}, "
        f"{os.cpu_count()} CPUs shared by clients and servers; per level and server <= {args.requests} requests / "
        f"{args.seconds:.0f} s in {args.rounds} turns; torch threads {args.threads}; new server --workers "
        f"{args.workers or 'default'}; baseline {args.baseline or '-'}; client {args.client}; "
        f"load average at start {load_start[0]:.1f}, at end {load_end[0]:.1f}"
    )
    head = f"{'query':7} {'clients':>7}"
    for n in names:
        head += f" | {n + ' req/s':>14} {'p50 ms':>7} {'p99 ms':>7} {'cli us':>6}"
    head += " | new/base | in-process req/s | new/in-process"
    print(head)
    for r in results:
        line = f"{r['mode']:7} {r['clients']:>7}"
        for n in names:
            x = r[n]
            line += f" | {x['rps']:>14.1f} {x['p50_ms']:>7.2f} {x['p99_ms']:>7.2f} {x['client_cpu_us']:>6.0f}"
        ratio = f"x{r['new']['rps'] / r['baseline']['rps']:.2f}" if "baseline" in r else "-"
        ref = r["reference"]["rps"]
        line += f" | {ratio:>8} | {ref:>16.1f} | x{r['new']['rps'] / ref:.2f}"
        print(line)
    print(
        "cli us = the load generator's CPU per request; in-process = the same searches as direct Index.search "
        "calls (one thread, no HTTP), run just before each level; text = query encoded by the server, "
        "vector = pre-encoded {indices, values}"
    )
    errors = [r[n]["first_error"] for r in results for n in names if r[n]["errors"]]
    if errors:
        print("errors:", errors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "scifact")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=100_000, help="most requests per level and server")
    ap.add_argument("--seconds", type=float, default=12.0, help="most seconds per level and server")
    ap.add_argument("--rounds", type=int, default=4, help="slices per level, the servers taking turns")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--mode", choices=["text", "vector", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and the reference")
    ap.add_argument(
        "--workers", type=int, default=None, help="--workers of the new server (default: its own)"
    )
    ap.add_argument("--baseline", default=None, help="also run the server of this commit (e.g. aad7211)")
    ap.add_argument(
        "--also-workers", type=int, default=None, help="also run the new server with this --workers"
    )
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw", help="load generator")
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
    try:
        results = measure(args, idx, bodies, ref_queries, modes)
    finally:
        idx.close()
    report(args, results, n_docs, len(texts), load_start, os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps({"levels": results}, indent=1))


if __name__ == "__main__":
    main()
