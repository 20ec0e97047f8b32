"""A nine-document BEIR-layout collection with train qrels, shared by the mining and teacher tests."""

from __future__ import annotations

import json
from pathlib import Path

DOCS = {
    "d1": "insulin lowers blood glucose in diabetes",
    "d2": "glucose metabolism in the liver and insulin",
    "d3": "diabetes diet and insulin resistance",
    "d4": "vaccines trigger an immune response",
    "d5": "immune cells attack virus infected cells",
    "d6": "a vaccine trial for influenza virus",
    "d7": "protein folding by chaperones in the cell",
    "d8": "misfolded protein aggregates in the brain",
    "d9": "cell division and protein synthesis",
}
QUERIES = {"q1": "insulin and glucose", "q2": "vaccine immune response", "q3": "protein folding in cells"}
QRELS = {"q1": ["d1"], "q2": ["d4", "d6"], "q3": ["d7"]}


def write_beir(root: Path) -> Path:
    """Write the collection (corpus, queries, qrels/train.tsv) under ``root``."""
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in DOCS.items())
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items())
    )
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, ds in QRELS.items() for d in ds]
    (root / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    return root
