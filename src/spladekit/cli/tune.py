"""``spladekit tune``: measure and store the knobs that give an index's approximate search its recall targets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import InputError
from .options import json_option


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command("tune")(tune_cmd)


def tune_cmd(
    index: Path = typer.Argument(..., help="Index folder (local backend)."),
    queries: Path = typer.Option(
        None, "--queries", help="JSONL queries (BEIR layout) to tune on; default: documents of the index."
    ),
    recall: float = typer.Option(
        0.95, "--recall", help="Recall@10 target, in (0, 1); 0.9, 0.95, 0.99 always."
    ),
    sample: int = typer.Option(200, "--sample", help="Queries (or documents) measured.", min=1),
    as_json: bool = json_option("Print the stored table and the grid as JSON."),
) -> None:
    """Measure recall@10 against exact search for a grid of approximate-search knobs and store, per recall
    target, the cheapest setting that reaches it; ``search --approx 0.95`` then uses it."""
    from ..data import read_records
    from ..index import Index

    if not 0 < recall < 1:
        raise InputError(f"--recall must be in (0, 1), got {recall}")
    texts = None
    if queries is not None:
        if not queries.is_file():
            raise InputError(f"--queries {queries}: no such file")
        texts = [r.full_text for r in read_records(queries, kind="query")]
    with Index.open(index) as idx:
        qs = idx.query_encoder.encode_queries(texts) if texts else None
        rep = idx.tune(recall=recall, queries=qs, sample=sample)
    if as_json:
        typer.echo(json.dumps(rep))
        return
    typer.echo(f"{index}: tuned on {rep['sample']} {rep['queries']} (recall@{rep['k']} against exact search)")
    for row in rep["table"]:
        typer.echo(
            f"  recall >= {row['recall']:.2f}: query_terms {row['query_terms']}, heap_factor {row['heap_factor']} "
            f"(measured {row['measured']:.4f}, {row['work']:,.0f} entries read a query)"
        )
    missing = sorted({0.9, 0.95, 0.99, recall} - {r["recall"] for r in rep["table"]})
    for target in missing:
        typer.echo(f"  recall >= {target:.2f}: no setting reached it; searches at that target are exact")
