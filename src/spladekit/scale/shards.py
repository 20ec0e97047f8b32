"""Parquet shards of encoded vectors: the hand-off between (distributed) encoding, the index and the exporters.

A shards folder holds ``part-NNNNN.parquet`` files (columns ``id`` string, ``term_ids`` list<int32>, ``weights``
list<float32>, optional ``text`` string and ``metadata`` JSON string), a ``_vocab.json`` (term id -> token) and a
``_manifest.json`` that records the model (with its ``long_docs`` setting), the settings and the list of finished
shards. A shard appears in the manifest only after its file is fully written and renamed into place, so readers
never see half a shard and an interrupted run can resume.

Shards of documents encoded as passages (``long_docs="passages"``) hold one row per passage: the document's id on
each of its rows, in order, with ``passage`` (its number), ``start`` and ``end`` (its character span); the text and
metadata ride on passage 0 only. A document's passages are always in one shard, so a shard read back is a whole
number of documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encode.windows import LongDocs
from ..errors import DataFormatError, InputError
from ..io import atomic_write, atomic_writer
from ..sparse import SparseVectors, max_merge

MANIFEST = "_manifest.json"
VOCAB = "_vocab.json"
FORMAT = 1
PASSAGE_COLUMNS = ("passage", "start", "end")


@dataclass
class ShardDocuments:
    """The passages of a shard grouped by document, as ``PassageIndex.write_passages`` takes them: document ids,
    per passage the position of its document in ``ids`` and its character span, passages per document, and the
    documents' texts and metadata (from passage 0)."""

    ids: list[str]
    owner: np.ndarray
    spans: list[tuple[int, int]]
    counts: np.ndarray
    texts: list[str | None] | None
    metadata: list[dict | None] | None


@dataclass
class ShardBatch:
    """One shard read back: ids, vectors and (when stored) texts and metadata per row, the same shape as the
    ``DocumentBatch`` an index yields from ``iter_documents``. In a passages shard a row is a passage and
    ``passages`` holds (passage numbers, starts, ends); otherwise it is None."""

    ids: list[str]
    vectors: SparseVectors
    texts: list[str | None] | None = None
    metadata: list[dict | None] | None = None
    passages: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def documents(self) -> ShardDocuments:
        """Rows grouped by document (one passage per document when the shard holds whole documents)."""
        n = len(self.ids)
        if self.passages is None:
            spans = [(0, len(t) if t else 0) for t in (self.texts or [None] * n)]
            return ShardDocuments(
                list(self.ids), np.arange(n), spans, np.ones(n, np.int64), self.texts, self.metadata
            )
        numbers, starts, ends = self.passages
        first = np.flatnonzero(numbers == 0)
        counts = np.diff(np.append(first, n)).astype(np.int64)
        return ShardDocuments(
            [self.ids[i] for i in first],
            np.repeat(np.arange(len(first)), counts),
            list(zip(starts.tolist(), ends.tolist())),
            counts,
            None if self.texts is None else [self.texts[i] for i in first],
            None if self.metadata is None else [self.metadata[i] for i in first],
        )

    def merged(self) -> ShardBatch:
        """One row per document: a passages shard's rows merged by per-term max (what ``max`` gives), as a
        passages index's ``iter_documents`` yields them; a shard of whole documents as it is."""
        if self.passages is None:
            return self
        docs = self.documents()
        bounds = np.concatenate([[0], np.cumsum(docs.counts)]).tolist()
        rows = [
            max_merge([self.vectors.row(r) for r in range(s, e)]) for s, e in zip(bounds[:-1], bounds[1:])
        ]
        vectors = SparseVectors.from_rows(rows, self.vectors.dim, self.vectors.vocab)
        return ShardBatch(docs.ids, vectors, docs.texts, docs.metadata)


def shards_long_docs(manifest: dict) -> LongDocs:
    """How the shards of ``manifest`` encoded long documents (``truncate`` for folders written before windows)."""
    return LongDocs.from_record((manifest.get("model") or {}).get("long_docs"))


def is_shards_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder written by :func:`write_shard` / ``encode --ray`` (has ``_manifest.json``)."""
    return (Path(path) / MANIFEST).is_file()


def shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def _schema(with_text: bool, with_meta: bool):
    import pyarrow as pa

    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("term_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("weights", pa.list_(pa.float32()), nullable=False),
    ]
    if with_text:
        fields.append(pa.field("text", pa.string()))
    if with_meta:
        fields.append(pa.field("metadata", pa.string()))
    return pa.schema(fields)


def write_shard(
    path: str | Path,
    ids: Sequence[str],
    vectors: SparseVectors,
    texts: Sequence[str] | None = None,
    metadata: Sequence[dict | None] | None = None,
    passages: tuple[Sequence[int], Sequence[int], Sequence[int]] | None = None,
) -> int:
    """Write one parquet shard atomically (temp file + rename); returns the number of rows.

    Term ids are written sorted and unique (as ``SparseVectors`` keeps them) and weights as float32.
    ``passages``: (passage numbers, starts, ends) per row, for a shard of passages (rows of a document
    consecutive, numbered from 0; ``ids`` repeats the document's id).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    n = len(vectors)
    if len(ids) != n:
        raise InputError(f"{len(ids)} ids but {n} vectors")
    if texts is not None and len(texts) != n:
        raise InputError(f"{len(texts)} texts but {n} vectors")
    if metadata is not None and len(metadata) != n:
        raise InputError(f"{len(metadata)} metadata entries but {n} vectors")
    if passages is not None:
        if any(len(col) != n for col in passages):
            raise InputError(f"passage numbers and spans must have {n} entries, one per vector")
        problem = _passages_problem([str(i) for i in ids], np.asarray(passages[0], np.int64))
        if problem:
            raise InputError(f"{path}: {problem}")
    offsets = pa.array(vectors.indptr.astype(np.int32) if vectors.nnz < 2**31 else vectors.indptr)
    list_type = pa.ListArray if offsets.type == pa.int32() else pa.LargeListArray
    term_ids = list_type.from_arrays(offsets, pa.array(vectors.indices, pa.int32()))
    weights = list_type.from_arrays(offsets, pa.array(vectors.data, pa.float32()))
    columns = {"id": pa.array([str(i) for i in ids], pa.string()), "term_ids": term_ids, "weights": weights}
    if texts is not None:
        columns["text"] = pa.array(list(texts), pa.string())
    if metadata is not None:
        columns["metadata"] = pa.array([None if m is None else json.dumps(m) for m in metadata], pa.string())
    if passages is not None:
        for name, col, typ in zip(PASSAGE_COLUMNS, passages, (pa.int32(), pa.int64(), pa.int64())):
            columns[name] = pa.array(np.asarray(col, np.int64), typ)
    table = pa.table(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as f:
        pq.write_table(table, f, compression="zstd")
    return n


def read_shard(path: str | Path, dim: int, vocab: Sequence[str] | None = None) -> ShardBatch:
    """Read one parquet shard into ids + SparseVectors (+ texts/metadata when present)."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types; the user needs the file name
        raise DataFormatError(
            str(path), None, f"cannot read parquet shard ({str(e).splitlines()[0]})"
        ) from None
    names = set(table.column_names)
    missing = {"id", "term_ids", "weights"} - names
    if missing:
        raise DataFormatError(str(path), None, f"shard lacks column(s) {', '.join(sorted(missing))}")
    term_col = table.column("term_ids").combine_chunks()
    weight_col = table.column("weights").combine_chunks()
    indptr = np.asarray(term_col.offsets, dtype=np.int64)
    indptr = indptr - indptr[0] if len(indptr) else np.zeros(1, np.int64)
    if not np.array_equal(np.asarray(weight_col.offsets) - np.asarray(weight_col.offsets)[0], indptr):
        raise DataFormatError(str(path), None, "term_ids and weights lists differ in length")
    indices = np.asarray(term_col.flatten(), dtype=np.int32)
    data = np.asarray(weight_col.flatten(), dtype=np.float32)
    try:
        vectors = SparseVectors(indptr, indices, data, dim, vocab)
    except InputError as e:
        raise DataFormatError(str(path), None, str(e)) from None
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist() if "text" in names else None
    meta = None
    if "metadata" in names:
        meta = [None if m is None else json.loads(m) for m in table.column("metadata").to_pylist()]
    passages = None
    if names & set(PASSAGE_COLUMNS):
        if not set(PASSAGE_COLUMNS) <= names:
            raise DataFormatError(
                str(path), None, "passage shard needs all of the columns passage, start, end"
            )
        passages = tuple(np.asarray(table.column(c).to_numpy(), np.int64) for c in PASSAGE_COLUMNS)
        problem = _passages_problem(ids, passages[0])
        if problem:
            raise DataFormatError(str(path), None, problem)
    return ShardBatch(ids, vectors, texts, meta, passages)  # type: ignore[arg-type]


def _passages_problem(ids: list[str], numbers: np.ndarray) -> str | None:
    """What is wrong with the passage rows, or None: a document's passages are consecutive rows numbered 0, 1, ...
    and no document comes back later."""
    seen: set[str] = set()
    for i, doc in enumerate(ids):
        fresh = i == 0 or ids[i - 1] != doc
        if int(numbers[i]) != (0 if fresh else int(numbers[i - 1]) + 1):
            return f"row {i} ({doc!r}) is passage {int(numbers[i])}, out of order"
        if fresh:
            if doc in seen:
                return f"the passages of {doc!r} are not consecutive rows"
            seen.add(doc)
    return None


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{folder}: not a shards folder (no {MANIFEST}); write it with `spladekit encode --ray`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(str(path), e.lineno, f"invalid JSON ({e.msg})") from None
    if not isinstance(manifest, dict) or "shards" not in manifest or "dim" not in manifest:
        raise DataFormatError(str(path), None, "manifest lacks 'shards' or 'dim'")
    return manifest


def write_manifest(folder: str | Path, manifest: dict) -> None:
    """Replace the manifest atomically, so a crash leaves the previous list of finished shards."""
    atomic_write(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def read_vocab(folder: str | Path) -> list[str] | None:
    path = Path(folder) / VOCAB
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_vocab(folder: str | Path, vocab: Sequence[str]) -> None:
    atomic_write(Path(folder) / VOCAB, json.dumps(list(vocab), ensure_ascii=False))


def iter_shard_batches(folder: str | Path) -> Iterator[ShardBatch]:
    """Finished shards of a folder in shard order, one batch per shard, with texts and metadata when stored.

    A batch holds whole documents: in a passages folder every passage of a document is in the same batch (the
    rows of a passage shard are checked to be complete runs, and the manifest's document and passage counts)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    vocab = read_vocab(folder)
    dim = int(manifest["dim"])
    passages = shards_long_docs(manifest).strategy == "passages"
    for entry in sorted(manifest["shards"], key=lambda s: s["name"]):
        path = folder / entry["name"]
        if not path.is_file():
            raise DataFormatError(str(path), None, "shard listed in the manifest is missing")
        batch = read_shard(path, dim, vocab)
        if passages != (batch.passages is not None):
            raise DataFormatError(
                str(path),
                None,
                "holds whole documents, but the manifest says passages"
                if passages
                else "holds passages, but the manifest says whole documents",
            )
        docs = len(batch.ids) if batch.passages is None else int((batch.passages[0] == 0).sum())
        if "rows" in entry and docs != int(entry["rows"]):
            raise DataFormatError(str(path), None, f"has {docs} documents, manifest says {entry['rows']}")
        if "passages" in entry and len(batch.ids) != int(entry["passages"]):
            raise DataFormatError(
                str(path), None, f"has {len(batch.ids)} passages, manifest says {entry['passages']}"
            )
        yield batch


def read_shards(folder: str | Path) -> Iterator[tuple[list[str], SparseVectors]]:
    """(ids, vectors) of each finished shard of ``folder``, in order, one row per stored row (in a passages folder
    a passage: ids repeat; ``iter_shard_batches`` gives the passage numbers and spans)."""
    for batch in iter_shard_batches(folder):
        yield batch.ids, batch.vectors


def write_shards(
    folder: str | Path,
    ids: Sequence[str],
    vectors: SparseVectors,
    *,
    model: dict | None = None,
    texts: Sequence[str] | None = None,
    metadata: Sequence[dict | None] | None = None,
    shard_size: int = 10_000,
    kind: str = "document",
) -> dict:
    """Write a whole in-memory batch as a shards folder (single process); returns the manifest."""
    if shard_size < 1:
        raise InputError("shard_size must be at least 1")
    folder = Path(folder)
    if vectors.vocab is not None:
        write_vocab(folder, vectors.vocab)
    shards = []
    for number, start in enumerate(range(0, len(vectors), shard_size)):
        end = min(start + shard_size, len(vectors))
        rows = write_shard(
            folder / shard_name(number),
            ids[start:end],
            vectors[start:end],
            None if texts is None else texts[start:end],
            None if metadata is None else metadata[start:end],
        )
        shards.append({"name": shard_name(number), "rows": rows, "start": start})
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "dim": int(vectors.dim),
        "model": model or {},
        "shard_size": shard_size,
        "shards": shards,
        "complete": True,
    }
    write_manifest(folder, manifest)
    return manifest
