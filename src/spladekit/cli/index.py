"""``spladekit index``, ``info`` and ``delete``: build, sync and describe an index folder (``search`` is in
``cli/search.py``, registered here)."""

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
    index_option,
    json_option,
    long_docs_option,
    model_option,
    stride_option,
    window_option,
)
from .search import open_index, search_cmd


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
    bm25: bool | None = typer.Option(
        None,
        "--bm25/--no-bm25",
        help="Keep a BM25 view of the texts for hybrid search (local backend; on by default for a new index). "
        "On an index without one, --bm25 builds it from the stored texts.",
    ),
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
    if backend == "qdrant" and bm25:
        raise InputError("--bm25 applies to the local backend only (hybrid search needs a local index)")
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
        idx = _open_or_create(index, existed, model, backend, compact, url, collection, settings, bm25)
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
            if bm25 and not idx.has_bm25:
                idx.enable_bm25()
                typer.echo(f"{index}: built the BM25 view of {len(idx)} documents from their stored texts")
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


def _open_or_create(
    index: Path, existed: bool, model, backend, compact, url, collection, long_docs=None, bm25=None
):
    from ..index import Index

    if existed:
        idx = Index.open(index, encoder=model)
        if bm25 is False and idx.has_bm25:
            idx.close()
            raise InputError(f"{index} keeps a BM25 view: --no-bm25 applies to a new index")
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
    return Index.create(index, encoder=model, compact=compact, long_docs=long_docs, bm25=bm25 is not False)


def _remove_new_index(index: Path, created_folder: bool) -> None:
    """Undo a create that failed: the folder if this run made it, else only what it put in the empty folder."""
    if not index.exists():
        return
    if created_folder:
        shutil.rmtree(index, ignore_errors=True)
        return
    for p in index.iterdir():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


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
    if info.get("backend") != "qdrant":
        b = info.get("bm25")
        view = (
            f"{b['documents']:,} documents with text, {b['bytes']:,} B (Lucene BM25 k1={b['k1']} b={b['b']})"
            if b
            else "none (hybrid search needs one: spladekit index SOURCE -i INDEX --bm25)"
        )
        lines.append(("bm25 view", view))
    lines.append(("model", f"{m.get('name')} (weights sha256 {str(m.get('weights_sha256'))[:16]}…)"))
    qs = m.get("query_side") or {"kind": "mlm"}
    lines.append(
        (
            "queries",
            f"table lookup, inference-free ({qs.get('layout')} layout)"
            if qs["kind"] == "table"
            else "masked-LM",
        )
    )
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
