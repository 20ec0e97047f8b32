"""``spladekit index``, ``search``, ``info`` and ``delete``: build, sync, query and describe an index folder."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer

from ..errors import InputError
from .options import (
    EXIT_SKIPPED,
    batch_size_option,
    filter_option,
    highlight_option,
    index_option,
    json_option,
    k_option,
    long_docs_option,
    model_option,
    stride_option,
    window_option,
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)
    app.command("info")(info_cmd)
    app.command("delete")(delete_cmd)


# Seconds a write command waits for another writer (e.g. a running `spladekit serve` mid-write) to finish.
LOCK_WAIT = 10.0


def index_cmd(
    source: Path = typer.Argument(
        ...,
        help="BEIR folder, corpus.jsonl / JSONL with _id|id and text, folder of .txt/.md files, or parquet shards.",
    ),
    index: Path = index_option("Index folder (created if missing, synced with the source otherwise)."),
    model: str = model_option(),
    batch_size: int = batch_size_option(),
    keep_missing: bool = typer.Option(
        False, "--keep-missing", help="Keep documents whose source file or record is gone (default: remove)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at the first unreadable file or malformed record (default: skip, list)."
    ),
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
    long_docs: str = long_docs_option(None),
    window: int | None = window_option(),
    stride: int | None = stride_option(),
) -> None:
    """Index documents and keep the index in sync with the source: new documents are added, changed ones
    re-encoded, unchanged ones skipped, and those whose file or record is gone removed (--keep-missing keeps
    them). Unreadable files and malformed records are skipped and listed; the exit code is 3 when any were."""
    from ..index import is_index_folder
    from ..ingest import check_source, index_source
    from ..sources import source_kind

    if backend not in ("local", "qdrant"):
        raise InputError(f"--backend must be 'local' or 'qdrant', not {backend!r}")
    if backend == "local" and (url or collection):
        raise InputError("--url and --collection need --backend qdrant")
    if backend == "qdrant" and compact:
        raise InputError("--compact applies to the local backend only (Qdrant keeps float32 weights)")
    from ..encode.windows import check_long_docs

    settings = (
        check_long_docs(long_docs, window, stride) if (long_docs or window or stride is not None) else None
    )
    if source_kind(source) == "shards" and settings is None and not is_index_folder(index):
        from ..scale.shards import read_manifest, shards_long_docs

        settings = shards_long_docs(read_manifest(source))  # a new index encodes as its shards were
    if strict:
        check_source(source)
    t0 = time.perf_counter()
    existed = is_index_folder(index)
    created_folder = not index.exists()
    try:
        idx = _open_or_create(index, existed, model, backend, compact, url, collection, settings)
        # a served index is written by the server now and then: wait for its write to finish
        with idx, idx.writing(wait=LOCK_WAIT):
            report = index_source(
                idx,
                source,
                batch_size=batch_size,
                show_progress=True,
                keep_missing=keep_missing,
                strict=strict,
            )
            if optimize:
                idx.optimize()
            info = idx.info()
    except BaseException:
        if not existed:  # a failed create leaves nothing behind
            _remove_new_index(index, created_folder)
        raise
    where = (
        f" in {info['segments']} segment(s)" if "segments" in info else f" ({info.get('backend', 'qdrant')})"
    )
    typer.echo(
        f"{index}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed; {info['documents']} documents{where} ({time.perf_counter() - t0:.1f} s)"
    )
    if report.kept_missing:
        why = "--keep-missing" if keep_missing else "some records could not be read, so none was removed"
        typer.echo(f"kept {report.kept_missing} document(s) no longer in the source ({why})")
    if report.truncated:
        typer.echo(
            f"note: {report.truncated} document(s) are longer than the model's "
            f"{idx.model.get('max_length', 512)} tokens; only their first tokens are indexed "
            "(this index truncates: build a new one with --long-docs max or passages to index all of them)",
            err=True,
        )
    if report.windowed:
        typer.echo(
            f"{report.windowed} document(s) longer than one window: "
            f"{idx.long_docs.describe(idx.model.get('max_length', 512))}",
            err=True,
        )
    if report.skipped:
        typer.secho(f"skipped {len(report.skipped)} item(s):", fg=typer.colors.YELLOW, err=True)
        for e in report.skipped:
            typer.echo(f"  {e}", err=True)
        raise typer.Exit(EXIT_SKIPPED)


def _open_or_create(index: Path, existed: bool, model, backend, compact, url, collection, long_docs=None):
    from ..index import Index

    if existed:
        idx = Index.open(index, encoder=model)
        if long_docs is not None and idx.long_docs.record() != long_docs.record():
            idx.close()
            raise InputError(
                f"{index} encodes long documents by {idx.long_docs.record()}, not {long_docs.record()}: the "
                "setting is chosen when an index is created (leave --long-docs out, or use a new index folder)"
            )
        return idx
    if backend == "qdrant":
        import os

        return Index.create(
            index,
            encoder=model,
            backend="qdrant",
            url=url,
            collection=collection,
            api_key=os.environ.get("QDRANT_API_KEY"),
            long_docs=long_docs,
        )
    return Index.create(index, encoder=model, compact=compact, long_docs=long_docs)


def _remove_new_index(index: Path, created_folder: bool) -> None:
    """Undo a create that failed: the folder if this run made it, else only what it put in the empty folder."""
    if not index.exists():
        return
    if created_folder:
        shutil.rmtree(index, ignore_errors=True)
        return
    for p in index.iterdir():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def open_index(index: Path, model: str | None = None):
    """Open an index folder for reading; ``model``, when given, must be the model that built it (checked by
    weights hash, without loading the model)."""
    from ..index import Index, is_index_folder

    if not is_index_folder(index):
        raise InputError(f"{index}: no index here (build one with `spladekit index SOURCE -i {index}`)")
    idx = Index.open(index)
    if model is not None:
        from ..encode.loading import check_same_model, read_spec, resolve_model, weights_sha256

        given = {
            "name": model,
            "weights_sha256": weights_sha256(read_spec(resolve_model(model), model).transformer_path),
        }
        check_same_model(
            idx.model, given, f"--model {model}", "; leave --model out to use the index's own model"
        )
    return idx


def search_cmd(
    query: str = typer.Argument(..., help="Query text."),
    index: Path = index_option(),
    k: int = k_option(),
    filter: list[str] = filter_option(),
    explain: bool = typer.Option(False, "--explain", help="Show the matching terms behind each score."),
    approx: float = typer.Option(
        None,
        "--approx",
        help="Approximate: keep this share of the query weight, in (0, 1].",
        min=0.0,
        max=1.0,
    ),
    model: str = model_option("Model folder or hub id; must be the index's own (default: the index's)."),
    highlight: bool = highlight_option(),
    as_json: bool = json_option(),
) -> None:
    """Search an index folder."""
    from ..index.filters import filter_from_args

    flt = filter_from_args(filter)  # every input is checked before anything loads
    if approx is not None and approx <= 0:
        raise InputError(f"--approx must be in (0, 1], got {approx}")
    t0 = time.perf_counter()
    idx = open_index(index, model)
    enc = idx.query_encoder
    t1 = time.perf_counter()
    qv = enc.encode_queries([query])
    t2 = time.perf_counter()
    hits = idx.search(
        qv, k=k, filter=flt, explain=explain, with_text=True, approx=approx or False, highlight=highlight
    )
    t3 = time.perf_counter()
    if as_json:
        typer.echo(json.dumps([_hit_dict(h, explain) for h in hits], ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{query!r}: {len(hits)} hit(s) of {len(idx)} documents",
        caption=f"load {1000 * (t1 - t0):.0f} ms · encode {1000 * (t2 - t1):.1f} ms · "
        f"search {1000 * (t3 - t2):.1f} ms",
    )
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("text", overflow="fold", max_width=70)
    if explain:
        table.add_column("top terms (query x doc = contribution)")
    if highlight:
        table.add_column("matched words (term ← word)", overflow="fold", max_width=30)
    for rank, h in enumerate(hits, 1):
        row = [str(rank), h.id, f"{h.score:.3f}", _shown_text(h, highlight)]
        if explain:
            row.append("\n".join(f"{t} {q:.2f}x{d:.2f}={p:.2f}" for t, q, d, p in (h.explanation or [])[:6]))
        if highlight:
            row.append(_matched_words(h))
        table.add_row(*row)
    Console().print(table)


def _shown_text(h, highlight: bool) -> str:
    """The snippet with the matched words marked (rich markup), or the start of the text."""
    from rich.markup import escape

    if highlight and h.highlights:
        from ..index.highlight import render_snippet

        return render_snippet(h.highlights["snippet"])
    text = (h.text or "").replace("\n", " ")
    if h.passage is not None and h.text:
        text = h.text[h.passage[0] : h.passage[1]].replace("\n", " ")
    return escape(text[:160] + ("…" if len(text) > 160 else ""))


def _matched_words(h) -> str:
    from rich.markup import escape

    terms = (h.highlights or {}).get("terms") or []
    return "\n".join(escape(f"{t['term']} ← {t['word']}") for t in terms[:8] if t.get("word"))


def _hit_dict(h, explain: bool) -> dict:
    out = {"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata}
    if h.passage is not None:
        out["passage"] = {"start": h.passage[0], "end": h.passage[1]}
    if h.highlights is not None:
        out["highlights"] = h.highlights
    if explain:
        out["explanation"] = [
            {"token": t, "query": q, "doc": d, "product": p} for t, q, d, p in h.explanation or []
        ]
    return out


def delete_cmd(
    ids: list[str] = typer.Argument(..., help="Ids of the documents to delete."),
    index: Path = index_option(),
    missing_ok: bool = typer.Option(False, "--missing-ok", help="Ignore ids that are not in the index."),
) -> None:
    """Delete documents by id (one atomic commit; unknown ids are an error unless --missing-ok)."""
    idx = open_index(index)
    with idx, idx.writing(wait=LOCK_WAIT):
        todo = [x for x in dict.fromkeys(ids) if x in idx] if missing_ok else list(dict.fromkeys(ids))
        if todo:
            idx.delete(todo)
    typer.echo(f"{index}: deleted {len(todo)} document(s); {len(idx)} left")


def info_cmd(
    index: Path = index_option(),
    as_json: bool = json_option("Print JSON."),
) -> None:
    """Documents, segments, postings, bytes on disk and model of an index folder."""
    idx = open_index(index)
    info = idx.info()
    info["long_docs"] = window_stats(idx)
    if as_json:
        typer.echo(json.dumps(info))
        return
    m = info.get("model") or {}
    bpp = info.get("bytes_per_posting")
    lines = [
        (
            "documents",
            f"{info['documents']:,}"
            + (f" in {info['passages']:,} passages" if info.get("passages") is not None else "")
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
        other = info.get("bytes_other")
        detail = (
            f" (postings {bpp:.2f} B each; {other:,} B vocabulary, per-term tables, ids, texts)"
            if bpp
            else ""
        )
        lines.append(("bytes on disk", f"{info['bytes_on_disk']:,}{detail}"))
    lines.append(("model", f"{m.get('name')} (weights sha256 {str(m.get('weights_sha256'))[:16]}…)"))
    ld = info["long_docs"]
    how = "exact" if ld.get("sampled") is None else f"from {ld['sampled']:,} stored texts"
    per_doc = (
        f"; {ld['windows_per_document']:.2f} windows per document ({how})"
        if ld.get("windows_per_document")
        else ""
    )
    lines.append(("long documents", f"{ld['describe']}{per_doc}"))
    for key, val in lines:
        typer.echo(f"{key:>14}: {val}")


# Stored texts tokenised to estimate windows per document in a max / truncate index (passages are counted).
WINDOW_SAMPLE = 1000


def window_stats(idx) -> dict:
    """The index's long-document setting and its windows per document: exact for a passages index, estimated
    from a sample of stored texts otherwise (the tokenizer only; no model runs)."""
    ld = idx.long_docs
    max_length = int(idx.model.get("max_length", 512))
    out = {**ld.record(), "describe": ld.describe(max_length), "windows_per_document": None, "sampled": None}
    n_docs = len(idx)
    if not n_docs:
        return out
    if ld.strategy == "passages":
        out["windows_per_document"] = idx.info()["passages"] / n_docs
        return out
    # stored texts by id: no postings are read back into vectors, whatever the index's size
    texts = [t for doc in idx.ids()[:WINDOW_SAMPLE] if (t := (idx.get(doc) or {}).get("text"))]
    if texts:
        from ..encode.windows import LongDocs

        probe = LongDocs("max", ld.window, ld.stride)
        units = idx.query_encoder.plan_units(texts[:WINDOW_SAMPLE], "document", probe)
        out["windows_per_document"] = float(units.counts.mean())
        out["sampled"] = len(texts[:WINDOW_SAMPLE])
    return out
