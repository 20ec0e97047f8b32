"""``spladekit inspect`` and ``spladekit encode``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import InputError


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
    app.command("encode")(encode_cmd)


def inspect_cmd(
    text: str = typer.Argument(..., help="Text to encode."),
    query: bool = typer.Option(
        False, "--query", help="Encode as a query (query prompt) instead of a document."
    ),
    top_k: int = typer.Option(20, "--top-k", "-k", help="Number of terms to show."),
    model: str = typer.Option(
        None, "--model", "-m", help="Model folder or hub id (default: bundled splade-tiny)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the top SPLADE terms and weights of a text."""
    from rich.console import Console
    from rich.table import Table

    from ..encode import SpladeEncoder

    enc = SpladeEncoder.load(model)
    vec = enc.encode([text], kind="query" if query else "document")
    terms = vec.decode(top_k)[0]
    if as_json:
        typer.echo(json.dumps({"text": text, "active_dims": int(vec.active_dims()[0]), "terms": dict(terms)}))
        return
    table = Table(
        title=f"{'query' if query else 'document'}: {int(vec.active_dims()[0])} active terms ({enc.name})"
    )
    table.add_column("term")
    table.add_column("weight", justify="right")
    for t, w in terms:
        table.add_row(t, f"{w:.4f}")
    Console().print(table)


def encode_cmd(
    input: Path = typer.Argument(
        ..., help="JSONL with _id/id and text (BEIR title+text too), or a BEIR folder."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output JSONL: {_id, vector: {token: weight}}."),
    query: bool = typer.Option(False, "--query", help="Encode as queries."),
    model: str = typer.Option(
        None, "--model", "-m", help="Model folder or hub id (default: bundled splade-tiny)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    mode: str = typer.Option("exact", "--mode", help="exact | fp32 | fast"),
    max_active_dims: int = typer.Option(
        None, "--max-active-dims", help="Keep only the top-k terms of each vector."
    ),
    threads: int = typer.Option(None, "--threads", help="Torch threads (default: all cores)."),
    chunk: int = typer.Option(2048, "--chunk", help="Texts per write (bounds memory)."),
    use_ray: bool = typer.Option(
        False, "--ray", help="Encode with Ray Data (distributed); writes parquet shards."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: a local cluster)."),
) -> None:
    """Encode a corpus into Anserini JsonVectorCollection JSONL (or parquet shards with --ray)."""
    from ..data import read_records
    from ..encode import SpladeEncoder

    if use_ray:
        from ..scale.ray_encode import encode_with_ray

        encode_with_ray(
            input, output, model=model, query=query, batch_size=batch_size, mode=mode, address=address
        )
        return
    src = input / "corpus.jsonl" if input.is_dir() else input
    if not src.is_file():
        raise InputError(f"{input}: no such file (expected a JSONL file or a BEIR folder)")
    enc = SpladeEncoder.load(model, mode=mode, threads=threads)
    records = list(read_records(src, kind="query" if query else "document"))
    if not records:
        raise InputError(f"{src}: no records to encode")
    from tqdm.auto import tqdm

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    truncated = 0
    with tmp.open("w", encoding="utf-8") as f, tqdm(total=len(records), desc="encoding", unit="text") as bar:
        for s in range(0, len(records), chunk):
            part = records[s : s + chunk]
            vecs = enc.encode(
                [r.full_text for r in part],
                kind="query" if query else "document",
                batch_size=batch_size,
                max_active_dims=max_active_dims,
            )
            truncated += enc.last_report.truncated
            for r, d in zip(part, vecs.to_dicts()):
                f.write(json.dumps({"_id": r.id, "vector": d}, ensure_ascii=False) + "\n")
            bar.update(len(part))
    tmp.replace(output)
    typer.echo(
        f"wrote {len(records)} vectors to {output} ({truncated} texts truncated at {enc.max_length} tokens)"
    )
