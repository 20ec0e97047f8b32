"""Text sources a user points spladekit at: a BEIR folder, a JSONL file, a folder of .txt/.md files (or parquet
shards of vectors, which ``spladekit.scale.shards`` reads). Bad items are errors, or with ``on_error`` skipped and
reported, one place for every command that reads a source (index, encode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .data import OnError, Record, read_records
from .errors import DataFormatError, InputError

TEXT_SUFFIXES = (".txt", ".md")
# Bytes looked at to tell a binary file from text (as git and grep do: a NUL byte means binary).
BINARY_SNIFF = 8192


def source_kind(source: str | Path) -> str:
    """``beir`` | ``jsonl`` | ``shards`` | ``files``, or an InputError naming what was expected."""
    p = Path(source)
    if p.is_file():
        if p.suffix in (".jsonl", ".json"):
            return "jsonl"
        raise InputError(
            f"{p}: expected a .jsonl file, a BEIR folder, a folder of .txt/.md files or parquet shards"
        )
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder")
    if (p / "corpus.jsonl").is_file():
        return "beir"
    if (p / "_manifest.json").is_file() and any(p.glob("*.parquet")):
        return "shards"
    return "files"


def text_files(folder: Path) -> list[Path]:
    """The .txt/.md files under ``folder`` (sorted, hidden files and folders left out)."""
    return sorted(
        f
        for f in folder.rglob("*")
        if f.suffix.lower() in TEXT_SUFFIXES
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
        and f.is_file()
    )


def read_text_file(path: Path) -> str:
    """A text file's content; a DataFormatError for a binary, non-UTF-8, unreadable or empty file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataFormatError(str(path), None, f"unreadable ({e.strerror})") from None
    if b"\x00" in raw[:BINARY_SNIFF]:
        raise DataFormatError(str(path), None, "binary file (contains NUL bytes), not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(str(path), None, f"not UTF-8 text (bad byte at offset {e.start})") from None
    if not text.strip():
        raise DataFormatError(str(path), None, "empty file")
    return text.strip()


def iter_text_files(folder: Path, on_error: OnError | None = None) -> Iterator[Record]:
    """Every .txt/.md file under ``folder`` as a Record; id = path relative to the folder."""
    files = text_files(folder)
    if not files:
        raise InputError(f"{folder}: no corpus.jsonl, parquet shards or .txt/.md files found")
    for f in files:
        rel = f.relative_to(folder).as_posix()
        try:
            text = read_text_file(f)
        except DataFormatError as e:
            e.doc_id = rel
            if on_error is None:
                raise
            on_error(e)
            continue
        yield Record(rel, text, "", {"path": rel, "type": f.suffix.lower().lstrip(".")})


def iter_source_records(
    source: str | Path, *, kind: str = "document", on_error: OnError | None = None
) -> Iterator[Record]:
    """Records of a text source (not shards) in source order; bad items raise, or go to ``on_error``."""
    p = Path(source)
    what = source_kind(p)
    if what == "jsonl":
        return read_records(p, kind=kind, on_error=on_error)
    if what == "beir":
        return read_records(p / "corpus.jsonl", kind=kind, on_error=on_error)
    if what == "files":
        return iter_text_files(p, on_error)
    raise InputError(f"{p}: parquet shards carry vectors, not texts")
