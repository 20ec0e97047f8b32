"""The scorers a teacher ensemble combines, named on the command line: ``minilm`` (the bundled all-MiniLM-L6-v2
bi-encoder), ``bm25`` (bm25s over a collection), ``splade`` (the SPLADE model's own dot product), or a folder / hub
id (a cross-encoder or a sentence-transformers bi-encoder). Each scorer has ``score(queries, passages,
show_progress) -> list[float]``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

BUILTIN_SCORERS = ("minilm", "bm25", "splade")


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer as the user named it: ``kind`` is a built-in name or ``model`` (``source`` = folder / hub id);
    ``name`` labels it in reports and weight lists (unique within an ensemble)."""

    name: str
    kind: str
    source: str | None = None


def parse_scorers(specs: Sequence[str]) -> list[ScorerSpec]:
    """``minilm`` | ``bm25`` | ``splade`` | a model folder or hub id, each once; a folder is named by its last path
    part (``ce``, or ``ce-2`` when two folders share it)."""
    if not specs:
        raise InputError("no scorer given: name at least one of minilm, bm25, splade or a model folder")
    out: list[ScorerSpec] = []
    seen: set[str] = set()
    for raw in specs:
        s = str(raw).strip()
        if not s:
            raise InputError("empty scorer name: use minilm, bm25, splade or a model folder / hub id")
        if s.lower() in BUILTIN_SCORERS:
            spec = ScorerSpec(s.lower(), s.lower())
            if spec.name in seen:
                raise InputError(f"scorer {spec.name!r} given twice")
        elif "/" not in s and "\\" not in s and not Path(s).expanduser().exists():
            raise InputError(
                f"unknown scorer {s!r}: use {', '.join(BUILTIN_SCORERS)}, or a model folder or hub id (owner/name)"
            )
        else:
            base = Path(s.rstrip("/\\")).name or s
            name, i = base, 2
            while name in seen or name in BUILTIN_SCORERS:
                name, i = f"{base}-{i}", i + 1
            if any(o.source == s for o in out):
                raise InputError(f"scorer {s!r} given twice")
            spec = ScorerSpec(name, "model", s)
        seen.add(spec.name)
        out.append(spec)
    return out


def load_scorer(
    spec: ScorerSpec,
    *,
    collection: Sequence[str] = (),
    splade_model: str | Path | None = None,
    similarity: str = "cosine",
    batch_size: int = 64,
):
    """The scorer object of ``spec``; ``collection`` (texts) is BM25's, ``splade_model`` the ``splade`` scorer's
    model (None: the bundled splade-tiny)."""
    from .teacher import SpladeTeacher, load_teacher

    if spec.kind == "minilm":
        return load_teacher(None, similarity, batch_size)
    if spec.kind == "bm25":
        return BM25Teacher(collection)
    if spec.kind == "splade":
        return SpladeTeacher(splade_model, batch_size=min(batch_size, 32))
    return load_teacher(spec.source, similarity, batch_size)


class BM25Teacher:
    """BM25 (bm25s, Lucene variant, k1 = 1.2, b = 0.75) of each (query, passage) pair over a collection, the texts
    analysed as the index's BM25 view and eval's baseline analyse them (``index.lexical``). A passage outside the
    collection is added to it (so every pair has a score); duplicates count once."""

    def __init__(self, collection: Sequence[str]) -> None:
        texts = list(dict.fromkeys(t for t in collection if t and t.strip()))
        if not texts:
            raise InputError("BM25 needs a collection of at least one non-empty text")
        self._fit(texts)

    def _fit(self, texts: list[str]) -> None:
        import bm25s

        from ..index import lexical

        self._lexical = lexical
        self._texts = texts
        self._pos = {t: i for i, t in enumerate(texts)}
        self._model = bm25s.BM25(k1=lexical.K1, b=lexical.B, method=lexical.METHOD)
        self._model.index(lexical.analyze(texts, ids=True), show_progress=False)

    def __len__(self) -> int:
        return len(self._texts)

    def _extend(self, passages: Sequence[str]) -> None:
        new = [p for p in dict.fromkeys(passages) if p not in self._pos]
        if new:
            self._fit(self._texts + new)

    def score(self, queries: list[str], passages: list[str], show_progress: bool = False) -> list[float]:
        self._extend(passages)
        out = np.zeros(len(queries), dtype=np.float64)
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_query.setdefault(q, []).append(i)
        vocab = self._model.vocab_dict
        for q, where in by_query.items():
            terms = [t for t in self._lexical.analyze([q])[0] if t in vocab]
            if not terms:
                continue  # no query word in the collection: every passage scores 0
            scores = self._model.get_scores(terms)
            out[where] = scores[[self._pos[passages[i]] for i in where]]
        return out.tolist()
