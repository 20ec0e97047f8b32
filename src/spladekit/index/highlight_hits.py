"""Highlights for search hits: which word of each hit gave each matching term its weight, and a snippet.

Provenance is recomputed for the returned hits only, never stored: a forward pass over each hit's text (its best
passage in a passages index) with the numpy encoder where it can run the model. ``bench/highlight_results.md``
measures this against storing the arg-max token of every posting at index time.
"""

from __future__ import annotations

import numpy as np

from ..encode.provenance import term_sources
from .highlight import highlight
from .types import SearchHit


def provenance_encoder(index):
    """The encoder that recomputes provenance: the torch encoder when the index has it loaded already (about
    twice as fast per hit), else the query encoder (numpy when it can run the model; no torch import)."""
    loaded = getattr(getattr(index, "inner", index), "_encoder", None)
    if loaded is not None and hasattr(loaded, "token_logits"):
        return loaded
    enc = index.query_encoder
    return enc if hasattr(enc, "token_logits") else index.encoder


def add_highlights(
    index,
    hits: list[SearchHit],
    q_terms: np.ndarray,
    q_weights: np.ndarray,
    *,
    keep_text: bool,
    keep_explanation: bool,
) -> None:
    """Fill ``hit.highlights`` for hits searched with text and explanation (dropped after unless asked for)."""
    enc = provenance_encoder(index) if hits else None
    q_of = dict(zip(np.asarray(q_terms).tolist(), np.asarray(q_weights).tolist()))
    settings = index.long_docs
    for h in hits:
        if h.text and h.explanation:
            terms = np.asarray([enc.token_to_id[row[0]] for row in h.explanation], np.int64)
            weights = np.asarray([q_of[int(t)] for t in terms], np.float32)
            sources = term_sources(enc, h.text, terms, settings, span=h.passage)
            h.highlights = highlight(h.text, terms, weights, sources, index.vocab)
        if not keep_text:
            h.text = None
            h.metadata = None
        if not keep_explanation:
            h.explanation = None
