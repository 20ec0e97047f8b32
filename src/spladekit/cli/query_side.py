"""``spladekit idf``: an inference-free model from any SPLADE model and one's own collection (no training)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .options import model_option, output_option


def register(app: typer.Typer) -> None:
    """Add ``idf`` to ``app``."""
    app.command("idf")(idf_cmd)


def idf_cmd(
    source: Path = typer.Argument(
        ..., help="An index folder, or documents: a BEIR folder, a .jsonl file or a folder of .txt/.md files."
    ),
    output: Path = output_option("New folder for the inference-free model (sentence-transformers layout)."),
    model: str = model_option("Document model (default: an index's own model, else bundled splade-tiny)."),
    df: str = typer.Option(
        "tokens",
        "--df",
        help="Count document frequencies on the documents' tokens (tokens) or on their SPLADE vectors (vectors).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder."),
) -> None:
    """Write MODEL with an IDF query side counted over SOURCE: queries become token lookups (no model run),
    documents are encoded as before. Load the folder with --model DIR, SpladeEncoder.load or SparseEncoder."""
    from ..encode.encoder import SpladeEncoder
    from ..encode.idf import DF_SOURCES, build_idf_table
    from ..encode.loading import model_source
    from ..encode.st_folder import check_output, save_inference_free
    from ..index import Index, is_index_folder

    if df not in DF_SOURCES:
        raise InputError(f"unknown --df {df!r}: choose one of {', '.join(DF_SOURCES)}")
    check_output(output, overwrite)
    if is_index_folder(source):
        with Index.open(source) as idx:
            enc = SpladeEncoder.load(model or model_source(idx.model))
            if df == "vectors":
                table, summary = build_idf_table(
                    enc, vectors=(b.vectors for b in idx.iter_documents()), source="vectors"
                )
            else:
                table, summary = build_idf_table(enc, texts=_index_texts(idx, source), source="tokens")
    else:
        from ..sources import iter_source_records

        enc = SpladeEncoder.load(model)
        texts = (r.full_text for r in iter_source_records(source))
        table, summary = build_idf_table(enc, texts=texts, source=df)  # type: ignore[arg-type]
    save_inference_free(enc, table, output, overwrite=overwrite)
    typer.echo(
        f"{output}: {enc.name} documents, IDF queries over {summary['documents']:,} documents "
        f"({summary['source']}, {summary['terms_seen']:,} terms seen)"
    )


def _index_texts(idx, where: Path):
    for batch in idx.iter_documents():
        if batch.texts is None or any(t is None for t in batch.texts):
            raise InputError(
                f"{where}: some documents were stored without text; count on their vectors instead (--df vectors)"
            )
        yield from batch.texts  # type: ignore[misc]
