"""Readers for BEIR-layout collections and JSONL corpora, with errors that name the file and line."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataFormatError, InputError


@dataclass(frozen=True)
class Record:
    """One document or query: id, text, optional title and metadata."""

    id: str
    text: str
    title: str = ""
    metadata: dict | None = None

    @property
    def full_text(self) -> str:
        """Title and text joined as BEIR and sentence-transformers index them: ``(title + " " + text).strip()``."""
        return (self.title + " " + self.text).strip() if self.title else self.text.strip()


OnError = Callable[[DataFormatError], None]


def parse_json_line(line: str | bytes, path: str, lineno: int | None) -> dict:
    """One JSONL line as a JSON object, or a DataFormatError naming the file and line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(path, lineno, f"not UTF-8 text (bad byte at column {e.start + 1})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, lineno, "expected a JSON object")
    return obj


def iter_jsonl(path: str | Path, on_error: OnError | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line. A malformed line raises DataFormatError, or, with
    ``on_error``, is passed to it and skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, parse_json_line(line, str(path), lineno)
            except DataFormatError as e:
                if on_error is None:
                    raise
                on_error(e)


def parse_record(obj: Any, path: str, lineno: int | None, kind: str = "document") -> Record:
    """One record from a JSON object (JSONL line or parquet row): ``_id`` or ``id``, ``text``, optional
    ``title`` and ``metadata`` (an object, or a string holding one). The only place these rules live."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, lineno, "expected a JSON object")
    rid = obj.get("_id", obj.get("id"))
    if rid is None:
        raise DataFormatError(path, lineno, f"{kind} has no '_id' or 'id' field")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
        raise DataFormatError(path, lineno, f"{kind} id must be a non-empty string or an integer")
    rid = str(rid)
    text = obj.get("text", "") or ""
    title = obj.get("title", "") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise DataFormatError(path, lineno, f"{kind} 'text' and 'title' must be strings", rid)
    meta = obj.get("metadata")
    if isinstance(meta, str) and meta:
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise DataFormatError(path, lineno, "'metadata' must be a JSON object", rid) from None
    if meta is not None and not isinstance(meta, dict):
        raise DataFormatError(path, lineno, "'metadata' must be a JSON object", rid)
    return Record(rid, text, title, meta)


def read_records(
    path: str | Path, *, kind: str = "document", on_error: OnError | None = None
) -> Iterator[Record]:
    """Read a JSONL file of records (see ``parse_record``). A malformed line raises DataFormatError, or, with
    ``on_error``, is reported to it and skipped."""
    for lineno, obj in iter_jsonl(path, on_error):
        try:
            yield parse_record(obj, str(path), lineno, kind)
        except DataFormatError as e:
            if on_error is None:
                raise
            on_error(e)


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``) into {query id: {doc id: relevance}}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    qrels: dict[str, dict[str, int]] = {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\n\r")
            except UnicodeDecodeError as e:
                raise DataFormatError(
                    str(path), lineno, f"not UTF-8 text (bad byte at column {e.start + 1})"
                ) from None
            if not line.strip():
                continue
            parts = line.split("\t")
            if lineno == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(parts) == 4:  # TREC qrels: qid iter docid rel
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise DataFormatError(str(path), lineno, f"expected 3 tab-separated fields, got {len(parts)}")
            qid, did, rel = (p.strip() for p in parts)
            try:
                score = int(float(rel))
            except ValueError:
                raise DataFormatError(str(path), lineno, f"relevance {rel!r} is not a number") from None
            qrels.setdefault(qid, {})[did] = score
    return qrels


@dataclass
class BeirCollection:
    """A BEIR folder: corpus, queries and the qrels of one split, checked against each other."""

    root: Path
    split: str
    corpus: dict[str, Record]
    queries: dict[str, Record]
    qrels: dict[str, dict[str, int]]

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def queries_path(self) -> Path:
        return self.root / "queries.jsonl"

    @property
    def qrels_path(self) -> Path:
        return self.root / "qrels" / f"{self.split}.tsv"

    def judged_queries(self) -> dict[str, Record]:
        """Queries with at least one judgement in the split, in qrels order."""
        return {q: self.queries[q] for q in self.qrels}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_beir(root: str | Path, split: str = "test", *, check_ids: bool = True) -> BeirCollection:
    """Load a BEIR folder; unknown ids in the qrels or a split with no judged query are clear errors."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"{root}: not a folder (expected a BEIR folder with corpus.jsonl, queries.jsonl, qrels/)"
        )
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise InputError(f"{root}: missing {name} (not a BEIR folder)")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise InputError(f"{qrels_path}: no such file (splits available: {', '.join(have) or 'none'})")
    corpus = {}
    for r in read_records(root / "corpus.jsonl"):
        corpus[r.id] = r
    queries = {r.id: r for r in read_records(root / "queries.jsonl", kind="query")}
    qrels = read_qrels(qrels_path)
    if check_ids:
        _check_qrels(qrels_path, qrels, corpus, queries)
    if not any(any(v > 0 for v in docs.values()) for docs in qrels.values()):
        raise InputError(f"{qrels_path}: no judged relevant document for any query")
    return BeirCollection(root, split, corpus, queries, qrels)


def _check_qrels(path: Path, qrels, corpus, queries) -> None:
    with path.open("r", encoding="utf-8") as f:
        lines = {}
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                lines.setdefault((parts[0].strip(), parts[-2].strip()), lineno)
    for qid, docs in qrels.items():
        if qid not in queries:
            raise DataFormatError(
                str(path), lines.get((qid, next(iter(docs)))), f"query id {qid!r} is not in queries.jsonl"
            )
        for did in docs:
            if did not in corpus:
                raise DataFormatError(
                    str(path), lines.get((qid, did)), f"document id {did!r} is not in corpus.jsonl"
                )
