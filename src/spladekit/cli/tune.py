"""``spladekit tune``: measure and store the knobs that give an index's approximate search its recall targets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import InputError
from .options import index_option, json_option


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command("tune")(tune_cmd)


def tune_cmd(
    index: Path = index_option("Index folder (local backend)."),
    queries: Path = typer.Option(
        None, "--queries", help="JSONL queries (BEIR layout) to tune on; default: documents of the index."
    ),
    recall: float = typer.Option(
        0.95, "--recall", help="Recall@10 target, in (0, 1); 0.9, 0.95, 0.99 always."
    ),
    sample: int = typer.Option(200, "--sample", help="Queries (or documents) measured.", min=1),
    exact_if_faster: bool = typer.Option(
        True,
        "--exact-if-faster/--always-approx",
        help="Search a target exactly when exact search is faster than its cheapest setting (the default), or "
        "store the approximate setting anyway.",
    ),
    as_json: bool = json_option("Print the stored table and the grid as JSON."),
) -> None:
    """Measure recall@10 against exact search for a grid of approximate-search knobs and store, per recall
    target, the cheapest setting that reaches it; ``search --approx 0.95`` then uses it."""
    from ..data import read_records
    from ..index import Index
    from ..index.approx import TARGETS
    from ..index.local.tuning import reaches

    if not 0 < recall < 1:
        raise InputError(f"--recall must be in (0, 1), got {recall}")
    texts = None
    if queries is not None:
        if not queries.is_file():
            raise InputError(f"--queries {queries}: no such file")
        texts = [r.full_text for r in read_records(queries, kind="query")]
    with Index.open(index) as idx:
        qs = idx.query_encoder.encode_queries(texts) if texts else None
        rep = idx.tune(recall=recall, queries=qs, sample=sample, exact_if_faster=exact_if_faster)
    if as_json:
        typer.echo(json.dumps(rep))
        return
    typer.echo(f"{index}: tuned on {rep['sample']} {rep['queries']} (recall@{rep['k']} against exact search)")
    for row in rep["table"]:
        typer.echo(
            f"  recall >= {row['recall']:.2f}: query_terms {row['query_terms']}, heap_factor {row['heap_factor']} "
            f"(measured {row['measured']:.4f}, lower bound {row['lower']:.4f}, {row['work']:,.0f} entries read "
            "a query)"
        )
    missing = sorted({*TARGETS, recall} - {r["recall"] for r in rep["table"]})
    for target in missing:
        reached = any(reaches(r, target) for r in rep["grid"][1:])
        why = "exact search was faster than every setting reaching it" if reached else "no setting reached it"
        typer.echo(f"  recall >= {target:.2f}: {why}; searches at that target are exact")
