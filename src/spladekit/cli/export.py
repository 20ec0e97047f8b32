"""``spladekit export``: vectors of an index (or parquet shards) for other engines."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import InputError


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(export_cmd)


def export_cmd(
    source: Path = typer.Argument(..., help="Index folder or parquet shards folder (encode --ray)."),
    fmt: str = typer.Option(..., "--format", help="jsonl | qdrant | opensearch"),
    output: Path = typer.Option(
        None, "--output", "-o", help="Output file (not needed for a Qdrant --url upload)."
    ),
    url: str = typer.Option(
        None, "--url", help="qdrant: upload to this Qdrant server instead of writing a file."
    ),
    collection: str = typer.Option(None, "--collection", help="qdrant: collection name for --url uploads."),
    index_name: str = typer.Option("spladekit", "--index-name", help="opensearch: target index name."),
    quantize: float = typer.Option(
        None, "--quantize", help="jsonl/opensearch: write round(weight * Q) integer impacts (Anserini: 100)."
    ),
) -> None:
    """Export vectors: Anserini/Seismic JSONL, Qdrant points (file or upload), or an OpenSearch bulk file."""
    from ..scale.export import FORMATS, export

    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "qdrant" and url is None and output is None:
        raise InputError("--format qdrant needs --output FILE or --url URL")
    result = export(
        source,
        output,
        fmt,
        url=url,
        collection=collection,
        index_name=index_name,
        quantize=quantize,
        api_key=os.environ.get("QDRANT_API_KEY"),
    )
    if isinstance(result, dict):
        typer.echo(
            f"wrote {result['documents']} documents to {result['bulk']} "
            f"(mapping: {result['mapping']}, renamed tokens: {result['tokens']})"
        )
    else:
        where = output if output is not None else f"{url} (collection {collection or 'from the folder name'})"
        typer.echo(f"wrote {result} documents to {where}")
