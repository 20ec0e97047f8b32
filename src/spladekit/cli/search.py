"""``spladekit search``: query an index folder, SPLADE alone or fused with BM25 (``--hybrid``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ..errors import InputError
from .options import (
    approx_option,
    filter_option,
    highlight_option,
    hybrid_from_args,
    hybrid_option,
    hybrid_weight_option,
    index_option,
    json_option,
    k_option,
    model_option,
    rrf_k_option,
)


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
    approx: float = approx_option(),
    model: str = model_option("Model folder or hub id; must be the index's own (default: the index's)."),
    highlight: bool = highlight_option(),
    hybrid: str = hybrid_option(),
    hybrid_weight: float = hybrid_weight_option(),
    rrf_k: int = rrf_k_option(),
    as_json: bool = json_option(),
) -> None:
    """Search an index folder (--hybrid: fused with the index's BM25 ranking of the same words)."""
    from ..index.approx import check_approx
    from ..index.filters import filter_from_args

    flt = filter_from_args(filter)  # every input is checked before anything loads
    fusion = hybrid_from_args(hybrid, hybrid_weight, rrf_k)
    check_approx(approx)
    t0 = time.perf_counter()
    idx = open_index(index, model)
    enc = idx.query_encoder
    t1 = time.perf_counter()
    # hybrid search needs the text (BM25 reads its words): the query is encoded inside the search
    qv = enc.encode_queries([query]) if fusion is None else query
    t2 = time.perf_counter()
    hits = idx.search(
        qv,
        k=k,
        filter=flt,
        explain=explain,
        with_text=True,
        approx=approx if approx is not None else False,
        highlight=highlight,
        hybrid=fusion,
    )
    t3 = time.perf_counter()
    if as_json:
        typer.echo(json.dumps([_hit_dict(h, explain) for h in hits], ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    timing = (
        f"encode {1000 * (t2 - t1):.1f} ms · search {1000 * (t3 - t2):.1f} ms"
        if fusion is None
        else f"encode + hybrid search ({fusion.method}) {1000 * (t3 - t2):.1f} ms"
    )
    table = Table(
        title=f"{query!r}: {len(hits)} hit(s) of {len(idx)} documents",
        caption=f"load {1000 * (t1 - t0):.0f} ms · {timing}",
    )
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    if fusion is not None:
        table.add_column("splade (rank)", justify="right")
        table.add_column("bm25 (rank)", justify="right")
    table.add_column("text", overflow="fold", max_width=70)
    if explain:
        table.add_column("top terms (query x doc = contribution)")
    if highlight:
        table.add_column("matched words (term ← word)", overflow="fold", max_width=30)
    for rank, h in enumerate(hits, 1):
        row = [str(rank), h.id, f"{h.score:.4f}" if fusion else f"{h.score:.3f}"]
        if fusion is not None:
            row += [_component(h.hybrid, "splade"), _component(h.hybrid, "bm25")]
        row.append(_shown_text(h, highlight))
        if explain:
            row.append("\n".join(f"{t} {q:.2f}x{d:.2f}={p:.2f}" for t, q, d, p in (h.explanation or [])[:6]))
        if highlight:
            row.append(_matched_words(h))
        table.add_row(*row)
    Console().print(table)


def _component(parts: dict | None, run: str) -> str:
    """One run's score and rank of a hybrid hit ("-": not in that run's top depth)."""
    x = (parts or {}).get(run)
    return "-" if x is None else f"{x['score']:.3f} (#{x['rank']})"


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
    if h.hybrid is not None:
        out["hybrid"] = h.hybrid
    if explain:
        out["explanation"] = [
            {"token": t, "query": q, "doc": d, "product": p} for t, q, d, p in h.explanation or []
        ]
    return out
