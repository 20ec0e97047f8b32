"""Long documents: retrieval quality of truncate / max / passages on a synthetic long scifact corpus, and what
windows cost to encode.

Run from the repository root:
    python bench/long_docs.py                      # quality (part 1), ~12 min on 2 cores
    python bench/long_docs.py --cost               # encoding cost (part 2) only
    python bench/long_docs.py --queries 50 --distractors 500    # a quicker quality run

Part 1, quality. Built at run time from ../shared/data/scifact (nothing is copied into the project). For every
document relevant to a sampled test query (``--queries``, seeded; default all 300) a long document of 1,500-4,000
tokens (the bundled model's tokenizer, content tokens) is made of unrelated scifact documents (relevant to no test
query, each used once, in a seeded order) with the relevant document's full text inserted at a document boundary
at or past content token 600, i.e. wholly outside the first 512-token window. The long document keeps the
relevant document's id, so the qrels apply unchanged. The control corpus has the same documents with the relevant
text first and the same fillers after it. Both corpora also hold the scifact documents not used as fillers as
ordinary documents (``--distractors`` of them, seeded; default all). Each corpus is indexed three times with the
bundled splade-tiny (mode exact), ``Index.create(long_docs=truncate|max|passages)`` + ``add`` + ``commit``, and
searched with the query texts one by one (k=10: documents, also for passages); BM25 (``BM25Baseline``) over the full texts is the lexical
reference. Metrics: ``spladekit.eval.metrics`` (ir-measures). Target: with the relevant text past token 600, max
and passages keep >= 90% of the control's R@10. ``--engine exact`` ranks by brute force from the encoder's
vectors (``encode_documents`` / ``encode_passages`` + ``exact_search``) instead of the index: the reference the
index must agree with. Reported per index: bytes on disk (``info()["bytes_on_disk"]``), postings, build seconds,
and the p50 of ``search`` one query at a time, with the query text (encoding included: the index's query encoder
is the torch document encoder once it is loaded) and with the query vector encoded beforehand (the index alone),
each query on every index in turn.

Part 2, cost (``--cost``). The same scifact text stream (seeded order, 64,000 content tokens) cut at word starts
into documents of ~500, ~2,000 and ~8,000 tokens; each set encoded under ``max`` at batch 32, sizes alternating
within each of 3 repetitions; median document tokens per second per size and max/min (target: within 15%).
Peak memory: 510-token documents (512 with [CLS]/[SEP]: one window) against 8,000-token documents, same tokens
and batch size, each in a fresh process: peak RSS minus the RSS after loading the model, warming up and building
the documents. Peak RSS is VmHWM reset just before encoding (``/proc/self/clear_refs``): ru_maxrss cannot be reset
and on Linux carries the forking parent's peak across exec.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"
SEP = "\n\n"  # between joined documents (BERT's pre-tokenizer: token counts add up exactly)
STRATEGIES = ("truncate", "max", "passages")
K = 10


def tokenizer():
    from tokenizers import Tokenizer

    from spladekit.encode import bundled_model_path

    tok = Tokenizer.from_file(str(bundled_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def n_tokens(tok, texts: list[str]) -> np.ndarray:
    """Content tokens (no [CLS]/[SEP]) of each text."""
    return np.array([len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)], np.int64)


# ---------------------------------------------------------------------- part 1: the long corpus
@dataclass
class LongCorpus:
    ids: list[str]  # long documents first, then distractors
    embedded: list[str]
    control: list[str]
    n_long: int
    lengths: np.ndarray  # tokens of each long document (measured on the joined text)
    starts: np.ndarray  # content token at which the relevant text starts in the embedded document
    spans: list[tuple[int, int]]  # character span of the relevant text in the embedded document
    fillers: int


def build_corpus(col, qids, seed, n_distractors, tok, lo=1500, hi=4000, min_start=600) -> LongCorpus:
    rng = np.random.default_rng(seed)
    test_rel = {d for q in col.qrels.values() for d, r in q.items() if r > 0}
    rel = sorted({d for q in qids for d, r in col.qrels[q].items() if r > 0})
    pool = [d for d in col.corpus if d not in test_rel]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    text = {d: col.corpus[d].full_text for d in [*rel, *pool]}
    ntok = dict(zip(text, n_tokens(tok, list(text.values())).tolist()))
    queue = deque(pool)
    used = 0

    def take(total: int, need: int, limit: int, floor: int) -> list[str]:
        """Fillers from the queue until ``total`` reaches ``need``, skipping any that would pass ``limit`` (when
        100 in a row do not fit, ``floor`` is enough)."""
        got, aside = [], []
        while total < need:
            if not queue or len(aside) >= 100:
                if total >= floor:
                    break
                sys.exit("not enough scifact documents to fill the long documents (use fewer --queries)")
            f = queue.popleft()
            if total + ntok[f] > limit:
                aside.append(f)
                continue
            got.append(f)
            total += ntok[f]
        queue.extendleft(reversed(aside))
        return got

    emb, ctl, starts, spans, expect = [], [], [], [], []
    for d in rel:
        r = ntok[d]
        target = max(int(rng.integers(lo, hi + 1)), min_start + r)
        at = int(rng.integers(min_start, max(min_start, target - r) + 1))
        before = take(0, at, hi - r, min_start)
        start = sum(ntok[f] for f in before)
        after = take(start + r, target, hi, lo)
        used += len(before) + len(after)
        head = SEP.join(text[f] for f in before) + SEP
        emb.append(head + text[d] + SEP + SEP.join(text[f] for f in after))
        ctl.append(SEP.join(text[x] for x in [d, *before, *after]))
        starts.append(start)
        expect.append(start + r + sum(ntok[f] for f in after))
        spans.append((len(head), len(head) + len(text[d])))
    rest = list(queue)
    if n_distractors is not None and n_distractors < len(rest):
        rest = [rest[i] for i in np.sort(rng.choice(len(rest), n_distractors, replace=False))]
    lengths = n_tokens(tok, emb)
    if not (np.array_equal(lengths, expect) and np.array_equal(lengths, n_tokens(tok, ctl))):
        sys.exit("joined documents do not have the token counts of their parts (start tokens would be off)")
    plain = [text[x] for x in rest]
    return LongCorpus(
        [*rel, *rest], emb + plain, ctl + plain, len(rel), lengths, np.array(starts), spans, used
    )


# ---------------------------------------------------------------------- part 1: runs
def index_run(path: Path, strategy: str, enc, ids, texts, queries, batch_size: int) -> dict:
    """Build an index with ``strategy`` (left open, for the latency pass), then search every query text (k=10)."""
    from spladekit.index import Index

    t = time.perf_counter()
    idx = Index.create(path, encoder=enc, long_docs=strategy)
    idx.add(ids, texts, batch_size=batch_size)
    idx.commit()
    build = time.perf_counter() - t
    run, passages = {}, {}
    for qid, q in queries:
        hits = idx.search(q, k=K)
        run[qid] = [(h.id, h.score) for h in hits]
        passages[qid] = {h.id: getattr(h, "passage", None) for h in hits}
    dup = sum(len({d for d, _ in r}) < len(r) for r in run.values())
    short = sum(len(r) < K for r in run.values())
    if dup or short:
        print(
            f"  {strategy}: {dup} queries with a document twice in the top {K}, {short} with fewer than {K} hits"
        )
    info = idx.info()
    size = info.get("bytes_on_disk", info.get("bytes"))
    return {"run": run, "bytes": size, "build_s": build, "info": info, "passages": passages, "index": idx}


def latencies(indexes: dict, queries, qvecs, reps: int) -> dict:
    """p50 ms of ``search(text, k=10)`` and of ``search(vector, k=10)`` (query encoded beforehand: the index
    alone) per index: each query on every index in turn (order rotating), ``reps`` passes after a warm-up, so that
    the indexes share whatever else the machine is doing."""
    names = list(indexes)
    for name in names:
        for j, (_, q) in enumerate(queries[:5]):
            indexes[name].search(q, k=K)
            indexes[name].search(qvecs[j : j + 1], k=K)
    lat: dict = {(n, kind): [] for n in names for kind in ("text", "vector")}
    for rep in range(reps):
        for j, (_, q) in enumerate(queries):
            r = (j + rep) % len(names)
            for name in names[r:] + names[:r]:
                for kind, query in (("text", q), ("vector", qvecs[j : j + 1])):
                    t = time.perf_counter()
                    indexes[name].search(query, k=K)
                    lat[(name, kind)].append(time.perf_counter() - t)
    return {key: 1e3 * statistics.median(v) for key, v in lat.items()}


def exact_runs(enc, ids, texts, queries, batch_size: int) -> dict[str, dict]:
    """Brute-force rankings from the encoder's own vectors (no index): truncate from ``encode_documents``; max
    merged from ``encode_passages`` (the same windows in the same batches); passages: best passage per document."""
    from spladekit.eval.retrieval import exact_search, rank_order
    from spladekit.sparse import SparseVectors, max_merge

    qv = enc.encode_queries([q for _, q in queries])
    out = {}
    t = time.perf_counter()
    docs = enc.encode_documents(texts, long_docs="truncate", batch_size=batch_size)
    out["truncate"] = {"vectors": docs, "build_s": time.perf_counter() - t}
    t = time.perf_counter()
    p = enc.encode_passages(texts, batch_size=batch_size)
    build = time.perf_counter() - t
    starts = np.concatenate([[0], np.cumsum(p.counts)[:-1]])
    rows = [max_merge([p.vectors.row(u) for u in range(s, s + c)]) for s, c in zip(starts, p.counts)]
    out["max"] = {"vectors": SparseVectors.from_rows(rows, enc.vocab_size), "build_s": build}
    for name in ("truncate", "max"):
        ranked = exact_search(qv, out[name].pop("vectors"), ids, k=K)
        out[name]["run"] = {qid: r for (qid, _), r in zip(queries, ranked)}
    scores = (qv.to_scipy() @ p.vectors.to_scipy().T).toarray()
    best = np.maximum.reduceat(scores, starts, axis=1)
    run = {}
    for (qid, _), row in zip(queries, best):
        pos = np.flatnonzero(row > 0)
        top = pos[rank_order([ids[i] for i in pos], row[pos])][:K]
        run[qid] = [(ids[i], float(row[i])) for i in top]
    out["passages"] = {"run": run, "build_s": build}
    return out


def quality(args) -> None:
    import torch

    from spladekit import SpladeEncoder
    from spladekit.data import load_beir
    from spladekit.eval.metrics import compute_metrics
    from spladekit.eval.retrieval import BM25Baseline

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    col = load_beir(DATA, "test")
    qids = list(col.qrels)
    if args.queries < len(qids):
        pick = np.random.default_rng(args.seed).choice(len(qids), args.queries, replace=False)
        qids = [qids[i] for i in np.sort(pick)]
    qrels = {q: col.qrels[q] for q in qids}
    queries = [(q, col.queries[q].text) for q in qids]
    tok = tokenizer()
    c = build_corpus(col, qids, args.seed, args.distractors, tok)
    print(
        f"{len(qids)} test queries; {c.n_long} long documents of {c.lengths.min()}-{c.lengths.max()} tokens "
        f"(median {int(np.median(c.lengths))}), relevant text starting at token {c.starts.min()}-{c.starts.max()} "
        f"(median {int(np.median(c.starts))}), {c.fillers} filler documents; {len(c.ids) - c.n_long} distractors; "
        f"seed {args.seed}; built in {time.perf_counter() - t0:.1f} s"
    )
    enc = SpladeEncoder.load(mode="exact", threads=args.threads)
    res: dict[tuple[str, str], dict] = {}
    tmp = tempfile.TemporaryDirectory(prefix="bench-long-docs-")
    for corpus, texts in (("embedded", c.embedded), ("control", c.control)):
        if args.engine == "exact":
            t = time.perf_counter()
            for s, r in exact_runs(enc, c.ids, texts, queries, args.batch_size).items():
                res[(corpus, s)] = r
            print(f"{corpus}: exact rankings in {time.perf_counter() - t:.0f} s")
        else:
            for s in STRATEGIES:
                res[(corpus, s)] = index_run(
                    Path(tmp.name) / f"{corpus}-{s}", s, enc, c.ids, texts, queries, args.batch_size
                )
                r = res[(corpus, s)]
                info = {k: v for k, v in r["info"].items() if k not in ("path", "model")}
                info["model.long_docs"] = r["info"].get("model", {}).get("long_docs")
                print(
                    f"{corpus} {s}: built in {r['build_s']:.0f} s; info() = {json.dumps(info, default=str)}"
                )
        t = time.perf_counter()
        bm = BM25Baseline()
        bm.index(c.ids, texts)
        res[(corpus, "BM25")] = {"run": dict(zip(qids, bm.search([q for _, q in queries], k=K)))}
        print(f"{corpus} BM25: {time.perf_counter() - t:.1f} s")
    for r in res.values():
        m = compute_metrics(r["run"], qrels)
        r["ndcg"], r["recall"] = m["ndcg@10"], m[f"recall@{K}"]

    print(
        f"\nSPLADE: bundled splade-tiny, mode exact, {args.engine}; {args.threads} threads; batch {args.batch_size}"
    )
    print(f"{'system':<10}{'nDCG@10 past 600':>18}{'R@10 past 600':>15}{'nDCG@10 ctl':>13}{'R@10 ctl':>10}"
          f"{'R@10 ratio':>12}  target ≥ 0.90")  # fmt: skip
    for s in (*STRATEGIES, "BM25"):
        e, k = res[("embedded", s)], res[("control", s)]
        ratio = e["recall"] / k["recall"] if k["recall"] else float("nan")
        verdict = ("PASS" if ratio >= 0.9 else "FAIL") if s in ("max", "passages") else "(reference)"
        print(f"{s:<10}{e['ndcg']:>18.4f}{e['recall']:>15.4f}{k['ndcg']:>13.4f}{k['recall']:>10.4f}"
              f"{ratio:>12.3f}  {verdict}")  # fmt: skip
    if args.engine == "index":
        index_report(res, c, enc, queries, qrels, args.search_reps)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average at the end {os.getloadavg()[0]:.1f}")


def index_report(res: dict, c: LongCorpus, enc, queries, qrels, reps: int) -> None:
    """Latency pass over the open indexes, then bytes on disk, build time and search p50 per index."""
    t = time.perf_counter()
    indexes = {k: r["index"] for k, r in res.items() if "index" in r}
    qvecs = enc.encode_queries([q for _, q in queries])
    for (k, kind), v in latencies(indexes, queries, qvecs, reps).items():
        res[k][f"p50_{kind}"] = v
    for idx in indexes.values():
        idx.close()
    print(
        f"(latency pass: {reps} × {len(queries)} queries × 2 kinds on each index, {time.perf_counter() - t:.0f} s)"
    )
    print(f"\n{'strategy':<10}{'corpus':<10}{'bytes on disk':>15}{'postings':>12}{'build s':>9}"
          f"{'p50 ms text':>13}{'p50 ms vector':>15}")  # fmt: skip
    for s in STRATEGIES:
        for corpus in ("embedded", "control"):
            r = res[(corpus, s)]
            print(f"{s:<10}{corpus:<10}{r['bytes']:>15,}{r['info'].get('postings', 0):>12,}{r['build_s']:>9.0f}"
                  f"{r['p50_text']:>13.2f}{r['p50_vector']:>15.3f}")  # fmt: skip
    mx, ps = res[("embedded", "max")], res[("embedded", "passages")]
    print(f"passages / max (past 600): bytes {ps['bytes'] / mx['bytes']:.2f}×, search p50 text "
          f"{ps['p50_text'] / mx['p50_text']:.2f}×, vector {ps['p50_vector'] / mx['p50_vector']:.2f}×")  # fmt: skip
    span = dict(zip(c.ids[: c.n_long], c.spans))
    found = hit = 0
    for qid, by_doc in res[("embedded", "passages")]["passages"].items():
        for d, p in by_doc.items():
            if d in span and qrels[qid].get(d, 0) > 0 and p is not None:
                found += 1
                hit += p[0] < span[d][1] and span[d][0] < p[1]
    print(f"passages: {hit}/{found} relevant hits name a passage overlapping the inserted relevant text")


# ---------------------------------------------------------------------- part 2: cost
def cost_docs(tok, size: int, total: int, seed: int) -> list[str]:
    """``total // size`` documents of at most ``size`` content tokens, cut at word starts from one stream of
    scifact texts (seeded order): every size covers the same text."""
    from spladekit.data import read_records

    recs = [r.full_text for r in read_records(DATA / "corpus.jsonl")]
    order = np.random.default_rng(seed).permutation(len(recs))
    parts, n = [], 0
    for i in order:
        parts.append(recs[i])
        n += len(recs[i]) // 6  # ~5 characters per token: an underestimate, so enough text; checked below
        if n > total * 1.2:
            break
    big = SEP.join(parts)
    e = tok.encode(big, add_special_tokens=False)
    off, words = e.offsets, e.word_ids
    if len(off) < total + 1:
        sys.exit("scifact stream too short for the cost documents")
    docs, s = [], 0
    for _ in range(total // size):
        end = s + size
        while end > s + 1 and words[end] is not None and words[end] == words[end - 1]:
            end -= 1
        docs.append(big[off[s][0] : off[end][0]].strip())
        s = end
    return docs


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(args) -> None:
    """In a fresh process: load, warm up, build documents, reset the peak, encode under max; print JSON."""
    import torch

    from spladekit import SpladeEncoder

    torch.set_num_threads(args.threads)
    size = args.memory_child
    docs = cost_docs(tokenizer(), size, args.cost_tokens, args.seed)
    enc = SpladeEncoder.load(mode=args.mode, threads=args.threads)
    enc.encode_documents(["warm up"], long_docs="max")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = rss_kb("VmRSS")
    enc.encode_documents(docs, long_docs="max", batch_size=args.batch_size)
    peak = rss_kb("VmHWM")
    rep = enc.last_report
    print(json.dumps({"size": size, "docs": len(docs), "windows": rep.windows, "base_mb": base / 1024,
                      "peak_mb": peak / 1024, "delta_mb": (peak - base) / 1024}))  # fmt: skip


def cost(args) -> None:
    import torch

    from spladekit import SpladeEncoder
    from spladekit.encode import LongDocs

    torch.set_num_threads(args.threads)
    tok = tokenizer()
    sizes = (500, 2000, 8000)
    docs = {s: cost_docs(tok, s, args.cost_tokens, args.seed) for s in sizes}
    ntok = {s: int(n_tokens(tok, d).sum()) for s, d in docs.items()}
    enc = SpladeEncoder.load(mode=args.mode, threads=args.threads)
    for s in sizes:
        enc.encode_documents(docs[s][:4], long_docs="max", batch_size=args.batch_size)
    times: dict[int, list[float]] = {s: [] for s in sizes}
    plan: dict[int, list[float]] = {s: [] for s in sizes}
    cpu: dict[int, list[float]] = {s: [] for s in sizes}
    batches: dict[int, int] = {}
    reports = {}
    for rep in range(args.reps):
        for s in sizes[rep % 3 :] + sizes[: rep % 3]:  # rotate the order between repetitions
            t, c = time.perf_counter(), time.process_time()
            enc.encode_documents(docs[s], long_docs="max", batch_size=args.batch_size)
            times[s].append(time.perf_counter() - t)
            cpu[s].append(time.process_time() - c)
            reports[s] = enc.last_report
            t = time.perf_counter()
            units = enc.plan_units(docs[s], "document", LongDocs("max"))
            plan[s].append(time.perf_counter() - t)
            batches[s] = len(units.batches(args.batch_size))
        now = [ntok[s] / times[s][-1] for s in sizes]
        print(f"rep {rep + 1}: " + ", ".join(f"~{s}: {v:,.0f} tok/s" for s, v in zip(sizes, now))
              + f"; max/min {max(now) / min(now):.3f}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"\nencoding under max, mode {args.mode}, {args.threads} threads, batch {args.batch_size}, "
          f"window {enc.max_length} / overlap {LongDocs('max').stride} (the default), median of {args.reps}")  # fmt: skip
    print(f"{'size':>6}{'docs':>6}{'doc tokens':>12}{'windows':>9}{'batches':>9}{'encoded tokens':>16}{'doc tok/s':>11}"
          f"{'encoded tok/s':>15}{'doc tok/CPU-s':>15}{'of which planning':>19}")  # fmt: skip
    rate = {}
    for s in sizes:
        med = statistics.median(times[s])
        rate[s] = ntok[s] / med
        r = reports[s]
        print(f"{s:>6}{len(docs[s]):>6}{ntok[s]:>12,}{r.windows:>9}{batches[s]:>9}{r.tokens:>16,}{rate[s]:>11,.0f}"
              f"{r.tokens / med:>15,.0f}{ntok[s] / statistics.median(cpu[s]):>15,.0f}"
              f"{statistics.median(plan[s]) / med:>18.1%}")  # fmt: skip
    spread = max(rate.values()) / min(rate.values())
    print(f"max/min doc tokens/s: {spread:.3f} ({'PASS' if spread <= 1.15 else 'FAIL'}: target within 15%)")
    per_rep = [max(ntok[s] / times[s][i] for s in sizes) / min(ntok[s] / times[s][i] for s in sizes)
               for i in range(args.reps)]  # fmt: skip
    cpu_rate = [ntok[s] / statistics.median(cpu[s]) for s in sizes]
    print(f"  median of the per-repetition max/min: {statistics.median(per_rep):.3f}; "
          f"on CPU time: {max(cpu_rate) / min(cpu_rate):.3f}; encoded/doc tokens: "
          + ", ".join(f"~{s} {reports[s].tokens / ntok[s]:.3f}" for s in sizes))  # fmt: skip

    print(f"\npeak memory, batch {args.batch_size}, fresh process each (VmHWM − RSS after load):")
    out = {}
    for s in (510, 8000):
        p = subprocess.run(
            [sys.executable, __file__, "--_memory-child", str(s), "--threads", str(args.threads), "--mode",
             args.mode, "--batch-size", str(args.batch_size), "--cost-tokens", str(args.cost_tokens),
             "--seed", str(args.seed)],
            capture_output=True, text=True,
        )  # fmt: skip
        if p.returncode != 0:
            print(f"  {s}-token documents: failed (exit {p.returncode}): {p.stderr.strip()[-300:]}")
            continue
        out[s] = json.loads(p.stdout.strip().splitlines()[-1])
        r = out[s]
        print(f"  {s:>5}-token documents: {r['docs']} docs, {r['windows']} windows, +{r['delta_mb']:.0f} MB "
              f"(base {r['base_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB)")  # fmt: skip
    if len(out) == 2:
        ratio = out[8000]["delta_mb"] / out[510]["delta_mb"]
        print(f"  8000 / 510: {ratio:.2f}× ({'PASS' if ratio <= 1.5 else 'FAIL'}: target ≤ 1.5×)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cost", action="store_true", help="run part 2 (encoding cost) instead of part 1")
    ap.add_argument("--queries", type=int, default=300, help="test queries (seeded sample; default all)")
    ap.add_argument("--distractors", type=int, default=None, help="ordinary documents (default: all left)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--engine", choices=("index", "exact"), default="index")
    ap.add_argument("--search-reps", type=int, default=1, help="latency passes over the queries")
    ap.add_argument("--mode", default="exact", help="encoder mode of the cost part")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cost-tokens", type=int, default=64000, help="document tokens per size (cost part)")
    ap.add_argument("--_memory-child", dest="memory_child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not (DATA / "corpus.jsonl").is_file():
        sys.exit(f"skipped: needs {DATA} (the shared evaluation data), which is absent")
    if args.memory_child:
        memory_child(args)
    elif args.cost:
        cost(args)
    else:
        quality(args)


if __name__ == "__main__":
    main()
