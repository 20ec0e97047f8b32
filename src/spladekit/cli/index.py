"""``spladekit index``, ``spladekit search`` and ``spladekit info``: build, query and describe an index folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ..errors import InputError


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)
    app.command("info")(info_cmd)


def index_cmd(
    source: Path = typer.Argument(
        ...,
        help="BEIR folder, corpus.jsonl / JSONL with _id|id and text, folder of .txt/.md files, or parquet shards.",
    ),
    index: Path = typer.Option(
        ..., "--index", "-i", help="Index folder (created if missing, updated otherwise)."
    ),
    model: str = typer.Option(
        None, "--model", "-m", help="Model folder or hub id (default: bundled splade-tiny)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Texts per encoder batch."),
    compact: bool = typer.Option(
        False, "--compact", help="New index only: 8-bit per-term quantised weights."
    ),
    optimize: bool = typer.Option(
        False, "--optimize", help="Merge into one segment afterwards (fastest search)."
    ),
    backend: str = typer.Option(
        "local",
        "--backend",
        help="New index only: local (embedded segments) or qdrant (a Qdrant collection).",
    ),
    url: str = typer.Option(
        None, "--url", help="qdrant: server or cluster URL (default: embedded Qdrant storage in the folder)."
    ),
    collection: str = typer.Option(None, "--collection", help="qdrant: collection name."),
) -> None:
    """Index documents; re-running on the same source re-encodes only changed documents and adds new ones."""
    from ..index import Index
    from ..index.core import MANIFEST
    from ..index.sources import index_source, source_kind

    if backend not in ("local", "qdrant"):
        raise InputError(f"--backend must be 'local' or 'qdrant', not {backend!r}")
    if backend == "local" and (url or collection):
        raise InputError("--url and --collection need --backend qdrant")
    if backend == "qdrant" and compact:
        raise InputError("--compact applies to the local backend only (Qdrant keeps float32 weights)")
    source_kind(source)  # fail on a bad source before loading any model
    t0 = time.perf_counter()
    if (index / MANIFEST).exists() or (index / "qdrant.json").exists():
        idx = Index.open(index, encoder=model)
    elif backend == "qdrant":
        import os

        idx = Index.create(
            index,
            encoder=model,
            backend="qdrant",
            url=url,
            collection=collection,
            api_key=os.environ.get("QDRANT_API_KEY"),
        )
    else:
        idx = Index.create(index, encoder=model, compact=compact)
    with idx:
        counts = index_source(idx, source, batch_size=batch_size, show_progress=True)
        if optimize:
            idx.optimize()
        info = idx.info()
    typer.echo(
        f"{index}: {counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged; "
        f"{info['documents']} documents"
        + (
            f" in {info['segments']} segment(s)"
            if "segments" in info
            else f" ({info.get('backend', 'qdrant')})"
        )
        + f" ({time.perf_counter() - t0:.1f} s)"
    )


def parse_filters(items: list[str] | None) -> dict | None:
    """``key=value`` items into an Index filter; a value that parses as JSON is used as such (``year=2020`` is an
    integer); a key given several times matches any of its values."""
    if not items:
        return None
    values: dict[str, list] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--filter expects key=value, got {item!r}")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        values.setdefault(key, []).append(val)
    return {k: v[0] if len(v) == 1 else {"$in": v} for k, v in values.items()}


def search_cmd(
    index: Path = typer.Argument(..., help="Index folder."),
    query: str = typer.Argument(..., help="Query text."),
    k: int = typer.Option(10, "-k", "--k", help="Number of results."),
    filter: list[str] = typer.Option(
        None, "--filter", "-f", help="Metadata key=value (repeat to AND; same key = OR)."
    ),
    explain: bool = typer.Option(False, "--explain", help="Show the matching terms behind each score."),
    approx: float = typer.Option(
        None, "--approx", help="Approximate: keep this share of the query weight (0-1]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Search an index folder."""
    from ..index import Index

    idx = Index.open(index)
    flt = parse_filters(filter)
    t0 = time.perf_counter()
    hits = idx.search(query, k=k, filter=flt, explain=explain, with_text=True, approx=approx or False)
    ms = 1000 * (time.perf_counter() - t0)
    if as_json:
        typer.echo(json.dumps([_hit_dict(h, explain) for h in hits], ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{query!r}: {len(hits)} hit(s) of {len(idx)} documents ({ms:.0f} ms incl. encoding)")
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("text", overflow="fold", max_width=70)
    if explain:
        table.add_column("top terms (query x doc = contribution)")
    for rank, h in enumerate(hits, 1):
        text = (h.text or "").replace("\n", " ")
        row = [str(rank), h.id, f"{h.score:.3f}", text[:160] + ("…" if len(text) > 160 else "")]
        if explain:
            row.append("\n".join(f"{t} {q:.2f}x{d:.2f}={p:.2f}" for t, q, d, p in (h.explanation or [])[:6]))
        table.add_row(*row)
    Console().print(table)


def _hit_dict(h, explain: bool) -> dict:
    out = {"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata}
    if explain:
        out["explanation"] = [
            {"token": t, "query": q, "doc": d, "product": p} for t, q, d, p in h.explanation or []
        ]
    return out


def info_cmd(
    index: Path = typer.Argument(..., help="Index folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Documents, segments, postings, bytes on disk and model of an index folder."""
    from ..index import Index

    info = Index.open(index).info()
    if as_json:
        typer.echo(json.dumps(info))
        return
    m = info.get("model") or {}
    bpp = info.get("bytes_per_posting")
    lines = [
        (
            "documents",
            f"{info['documents']:,}"
            + (f" ({info['deleted']:,} deleted, not merged yet)" if info.get("deleted") else ""),
        )
    ]
    if info.get("backend") == "qdrant":
        where = info.get("url") or "embedded storage in the folder"
        lines.append(("backend", f"qdrant, collection {info.get('collection')} ({where})"))
    else:
        lines += [
            ("segments", str(info["segments"])),
            ("postings", f"{info['postings']:,}"),
            ("weights", "8-bit per-term quantised" if info.get("compact") else "float32"),
        ]
    if info.get("bytes_on_disk") is not None:
        lines.append(
            ("bytes on disk", f"{info['bytes_on_disk']:,}" + (f" ({bpp:.2f} per posting)" if bpp else ""))
        )
    lines.append(("model", f"{m.get('name')} (weights sha256 {str(m.get('weights_sha256'))[:16]}…)"))
    for key, val in lines:
        typer.echo(f"{key:>14}: {val}")
