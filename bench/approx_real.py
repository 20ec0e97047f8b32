"""Does the recall knob hold on real vectors? The 22,624 real splade-tiny document vectors of the search benchmark
(``_search_data``: scifact, cranfield, cisi, the DL19 pool) in one fresh index with the approximate structure,
tuned on 200 of its documents and then on a random half of the 1,489 real queries; recall@10 against exact search
on the other half (``measure_approx``) at 0.9, 0.95 and 0.99. One thread.

    python bench/approx_real.py [INDEX_FOLDER]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _search_data import CACHE, CORPORA, encoded  # noqa: E402

from spladekit.index import Index  # noqa: E402
from spladekit.sparse import SparseVectors  # noqa: E402


def main() -> None:
    docs = SparseVectors.concat([encoded(c, "corpus") for c in CORPORA])
    qs = SparseVectors.concat([encoded(c, "queries") for c in CORPORA])
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE / "approx-real"
    shutil.rmtree(path, ignore_errors=True)
    idx = Index.create(path, approx=True)
    idx.flush_postings = 1 << 40  # one segment
    idx.add_vectors([str(i) for i in range(len(docs))], docs)
    idx.commit()
    print(f"{len(docs):,} documents, {len(qs):,} queries")
    perm = np.random.default_rng(0).permutation(len(qs))
    a, b = np.sort(perm[: len(qs) // 2]), np.sort(perm[len(qs) // 2 :])
    for src in ("documents", "queries"):
        given = None if src == "documents" else qs[a]
        rep = idx.tune(queries=given, sample=200 if given is None else len(a), exact_if_faster=False)
        table = [
            (r["recall"], r["query_terms"], r["heap_factor"], round(r["measured"], 3)) for r in rep["table"]
        ]
        print(f"tuned on {rep['sample']} {src}: {table}")
        for t in (0.9, 0.95, 0.99):
            m = idx.measure_approx(qs[b], approx=t, sample=len(b))
            print(
                f"  held-out real queries ({len(b)}), target {t}: knobs {m['plan']}, recall {m['recall']:.4f}, "
                f"p50 exact {m['exact_ms']:.3f} ms, approx {m['approx_ms']:.3f} ms"
            )
    idx.close()


if __name__ == "__main__":
    main()
