"""``spladekit inspect`` and ``spladekit encode``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import InputError
from .options import (
    EXIT_SKIPPED,
    batch_size_option,
    json_option,
    k_option,
    long_docs_option,
    model_option,
    output_option,
    stride_option,
    window_option,
)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
    app.command("encode")(encode_cmd)


def inspect_cmd(
    text: str = typer.Argument(..., help="Text to encode."),
    query: bool = typer.Option(
        False, "--query", help="Encode as a query (query prompt) instead of a document."
    ),
    k: int = k_option(20, "Number of terms to show."),
    model: str = model_option(),
    as_json: bool = json_option(),
) -> None:
    """Show the top SPLADE terms and weights of a text."""
    from ..encode.choose import light_or_full

    enc = light_or_full(model)
    vec = enc.encode([text], kind="query" if query else "document")
    terms = vec.decode(k)[0]
    active = int(vec.active_dims()[0])
    if as_json:
        typer.echo(json.dumps({"text": text, "active_dims": active, "terms": dict(terms)}))
        return
    from rich.console import Console
    from rich.table import Table

    truncated = enc.last_report.truncated
    table = Table(
        min_width=44,
        title=f"{'query' if query else 'document'}: {active} active terms ({enc.name})",
        caption=(f"truncated at {enc.max_length} tokens; " if truncated else "")
        + f"encoder: {type(enc).__name__}, {enc.compute_path()}",
    )
    table.add_column("term")
    table.add_column("weight", justify="right")
    for t, w in terms:
        table.add_row(t, f"{w:.4f}")
    Console().print(table)


def encode_cmd(
    input: Path = typer.Argument(
        ...,
        help="JSONL with _id/id and text (BEIR title+text too), a BEIR folder, or a folder of .txt/.md files.",
    ),
    output: Path = output_option(
        "Output JSONL: {_id, vector: {token: weight}} (a folder of parquet shards with --ray)."
    ),
    query: bool = typer.Option(False, "--query", help="Encode as queries."),
    model: str = model_option(),
    batch_size: int = batch_size_option(),
    mode: str = typer.Option("exact", "--mode", help="exact | fp32 | fast"),
    max_active_dims: int = typer.Option(
        None, "--max-active-dims", help="Keep only the top-k terms of each vector."
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        help="Torch threads (default: all cores; with --ray: per worker, default 1).",
        min=1,
    ),
    device: str = typer.Option(
        "cpu",
        "--device",
        help="cpu, cuda, cuda:N or auto (CUDA when there is one); pooling runs on the device.",
    ),
    chunk: int = typer.Option(
        None,
        "--chunk",
        help="Texts per write, bounding memory (default 2048; with --ray: per shard, 10000).",
        min=1,
    ),
    use_ray: bool = typer.Option(
        False, "--ray", help="Encode with Ray Data (distributed); writes parquet shards."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: a local cluster)."),
    long_docs: str = long_docs_option(None),
    window: int | None = window_option(),
    stride: int | None = stride_option(),
) -> None:
    """Encode a corpus into Anserini JsonVectorCollection JSONL (or parquet shards with --ray). Unreadable files
    and malformed records are skipped and listed; the exit code is 3 when any were.

    Documents longer than the model's window: --long-docs max (default) or truncate give one vector per document;
    passages (with --ray) writes one row per passage, for an index created with --long-docs passages."""
    from ..encode.windows import check_long_docs
    from ..sources import iter_source_records, source_kind

    kind = "query" if query else "document"
    given = long_docs is not None or window is not None or stride is not None
    if query and given:
        raise InputError("--long-docs, --window and --stride apply to documents; queries are truncated")
    settings = check_long_docs(long_docs, window, stride) if given else None
    if use_ray:
        if device != "cpu":
            raise InputError("--device applies to local encoding; Ray workers encode on their CPUs")
        from ..scale.ray_encode import encode_with_ray
        from ..scale.slices import DEFAULT_SHARD_SIZE

        encode_with_ray(
            input,
            output,
            model=model,
            query=query,
            batch_size=batch_size,
            mode=mode,
            max_active_dims=max_active_dims,
            address=address,
            cpus_per_worker=threads or 1,
            shard_size=chunk or DEFAULT_SHARD_SIZE,
            long_docs=settings,
        )
        return
    if address is not None:
        raise InputError("--address needs --ray")
    from ..encode.device import resolve_device

    resolve_device(device)  # a bad --device is refused before any file is read
    if settings is not None and settings.strategy == "passages":
        raise InputError("--long-docs passages writes a row per passage: it needs --ray (parquet shards)")
    if source_kind(input) == "shards":
        raise InputError(f"{input}: parquet shards hold vectors already; index or export them instead")
    skipped = []
    records = list(iter_source_records(input, kind=kind, on_error=skipped.append))
    if not records:
        raise InputError(
            f"{input}: no records to encode" + (f" ({len(skipped)} unreadable)" if skipped else "")
        )
    from tqdm.auto import tqdm

    from ..encode import SpladeEncoder
    from ..io import atomic_writer

    enc = SpladeEncoder.load(model, mode=mode, threads=threads, device=device)
    settings = enc.document_settings(settings)  # checked against the model's max length
    truncated = windowed = 0
    with atomic_writer(output) as f, tqdm(total=len(records), desc="encoding", unit="text") as bar:
        step = chunk or 2048
        for s in range(0, len(records), step):
            part = records[s : s + step]
            vecs = enc.encode(
                [r.full_text for r in part],
                kind=kind,
                batch_size=batch_size,
                max_active_dims=max_active_dims,
                long_docs=settings,
            )
            truncated += enc.last_report.truncated
            windowed += enc.last_report.windowed
            for r, d in zip(part, vecs.to_dicts()):
                f.write(json.dumps({"_id": r.id, "vector": d}, ensure_ascii=False) + "\n")
            bar.update(len(part))
    if windowed:
        note = f"{windowed} texts longer than one window: {settings.describe(enc.max_length)}"
    else:
        note = f"{truncated} texts truncated at {enc.max_length} tokens"
    typer.echo(f"wrote {len(records)} vectors to {output} ({note})")
    if skipped:
        typer.secho(f"skipped {len(skipped)} item(s):", fg=typer.colors.YELLOW, err=True)
        for e in skipped:
            typer.echo(f"  {e}", err=True)
        raise typer.Exit(EXIT_SKIPPED)
