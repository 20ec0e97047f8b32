"""Hybrid search for every backend: the SPLADE and the BM25 top ``depth`` of each text query, with the same
filter, fused by ``fusion.fuse`` into hits that carry both component scores (``SearchHit.hybrid``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from .fusion import Hybrid, fuse
from .types import SearchHit
from .validate import check_k


def query_texts(queries: Sequence) -> list[str]:
    """The texts of hybrid queries: BM25 needs the words, so a vector or ``{token: weight}`` query is refused."""
    for q in queries:
        if not isinstance(q, str):
            raise InputError(
                f"hybrid and BM25 search need text queries (BM25 scores the query's words), got "
                f"{type(q).__name__}: pass the query text, or leave hybrid out to search with a vector"
            )
    return list(queries)


def no_view(path, backend: str = "local") -> InputError:
    """The error for hybrid search on an index without a BM25 view: what to do about it."""
    if backend != "local":
        return InputError(
            f"hybrid search needs a BM25 view of the documents, which the {backend} backend does not keep: "
            "use a local index (spladekit index SOURCE -i FOLDER) for hybrid search"
        )
    return InputError(
        f"{path}: this index keeps no BM25 view, which hybrid search needs (it was made before hybrid search, or "
        f"with bm25=False): add one from the stored texts with `spladekit index SOURCE -i {path} --bm25` or "
        "`Index.open(path).enable_bm25()`"
    )


class LexicalDefaults:
    """The lexical half of the index contract, with the answers of a backend that keeps no BM25 view (a backend
    that keeps one overrides ``has_bm25``, ``enable_bm25`` and ``_search_bm25``)."""

    @property
    def has_bm25(self) -> bool:
        """Whether this index keeps a BM25 view of its documents (what hybrid search needs)."""
        return False

    def enable_bm25(self) -> None:
        """Keep a BM25 view from now on, built for the stored documents from their texts."""
        raise no_view(self.path, self.backend)

    def search_bm25(self, query: str, k: int = 10, filter=None, with_text: bool = False) -> list[SearchHit]:
        """The BM25 top ``k`` of a text query over the index's BM25 view alone (the lexical run hybrid search
        fuses), best first; ``filter`` as in ``search``."""
        k = check_k(k)
        [text] = query_texts([query])
        flt = self._prepare_filter(filter)
        hits = [SearchHit(d, s) for d, s in self._search_bm25([text], k, flt, 1)[0]]
        if with_text:
            _fill_records(self, hits)
        return hits

    def _search_bm25(self, texts: list[str], k: int, flt: Any, threads: int) -> list[list[tuple[str, float]]]:
        """Per text its BM25 top ``k`` as (id, score), best first, under the prepared filter ``flt``."""
        raise no_view(self.path, self.backend)


def hybrid_search(
    index, qs, texts: list[str], k: int, flt, hybrid: Hybrid, explain: bool, with_text: bool, threads: int,
    highlight: bool,
) -> list[list[SearchHit]]:  # fmt: skip
    """Top ``k`` of each query fused from the index's SPLADE (``_search``) and BM25 (``_search_bm25``) runs."""
    depth = hybrid.depth_for(k)
    lexical = index._search_bm25(
        texts, depth, flt, threads
    )  # an index without a view fails before any search
    dense = index._search(qs, depth, flt, explain or highlight, False, threads)
    out = []
    for (terms, weights), hits, run in zip(qs, dense, lexical):
        by_id = {h.id: h for h in hits}
        fused = []
        for f in fuse([(h.id, h.score) for h in hits], run, hybrid, k):
            hit = by_id.get(f.id) or SearchHit(f.id, 0.0)
            hit.score = f.score
            hit.hybrid = f.components()
            fused.append(hit)
        if with_text or highlight:
            _fill_records(index, fused)
        if highlight:
            from .highlight_hits import add_highlights

            add_highlights(index, fused, terms, weights, keep_text=with_text, keep_explanation=explain)
        out.append(fused)
    return out


def _fill_records(index, hits: list[SearchHit]) -> None:
    """Text and metadata of hits read by id (hits that did not come from a SPLADE search carry none)."""
    for hit in hits:
        rec = index.get(hit.id) or {}
        hit.text, hit.metadata = rec.get("text"), rec.get("metadata")
