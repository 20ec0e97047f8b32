"""``spladekit serve`` (HTTP API) and ``spladekit export`` (vectors for other engines)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import typer

from ..errors import InputError


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("serve")(serve_cmd)
    app.command("export")(export_cmd)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_cmd(
    index_dir: Path = typer.Argument(..., help="Index folder (embedded or Qdrant)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str = typer.Option(
        None, "--api-key", envvar="SPLADEKIT_API_KEY", help="Require this key in the X-API-Key header."
    ),
    protect: str = typer.Option("writes", "--protect", help="What the API key guards: writes | all."),
    create: bool = typer.Option(
        False, "--create", help="Create an empty index (bundled model) if none exists."
    ),
    max_body_bytes: int = typer.Option(
        8 * 1024 * 1024, "--max-body-bytes", help="Largest request body (413)."
    ),
    max_batch: int = typer.Option(
        256, "--max-batch", help="Most documents / queries / texts per request (422)."
    ),
    max_text_chars: int = typer.Option(20_000, "--max-text-chars", help="Longest text or query (422)."),
    max_k: int = typer.Option(1000, "--max-k", help="Largest k (422)."),
    threads: int = typer.Option(
        1,
        "--threads",
        help="Torch threads per encoding call. Default 1: queries are short, concurrent requests bring the "
        "parallelism, and multi-threaded torch stalls badly when the cores are busy.",
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve an index over HTTP (FastAPI + uvicorn): search, documents, encode, health, stats, /docs."""
    import uvicorn

    from ..serve import Limits, create_app

    if protect not in ("writes", "all"):
        raise InputError(f"--protect must be 'writes' or 'all', got {protect!r}")
    if not _is_loopback(host) and api_key is None:
        typer.secho(
            f"warning: serving on {host} without --api-key: anyone who can reach this port can write to the index",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if threads:
        import torch

        torch.set_num_threads(threads)
    limits = Limits(
        max_body_bytes=max_body_bytes, max_batch=max_batch, max_text_chars=max_text_chars, max_k=max_k
    )
    app = create_app(index_dir, api_key=api_key, protect=protect, limits=limits, create=create)
    typer.echo(f"serving {index_dir} on http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


def export_cmd(
    source: Path = typer.Argument(..., help="Index folder or parquet shards folder (encode --ray)."),
    fmt: str = typer.Option(..., "--format", "-f", help="jsonl | qdrant | opensearch"),
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
