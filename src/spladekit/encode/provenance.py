"""Where a document's terms come from: the token (and word) whose logit is the max that gives each term its weight.

A SPLADE document weight is ``activation(max over tokens (and windows) of logit[token, term])``, so every term of a
max-pooled vector has one source token: the term's own piece where the word occurs (``cell`` in "cells" →
``cell``), or, for an expansion term, the word that expanded it (``tumor`` from "cancer"). ``term_sources``
recomputes it for the few terms a search matched, from the document's text, with the same windows the index cut
(``LongDocs``): one forward pass per window, and only the matched terms' rows of the vocabulary projection
(``token_logits``). The recomputed weight equals the stored fp32 one within 1e-4 (``tests/test_highlight.py``).

When the arg-max token is a special token ([CLS]/[SEP], or a prompt token) the source has no location
(``token`` and ``word`` are None): those tokens summarise the whole window, and pointing at the best content token
instead would name a word whose logit is lower than the one that set the weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .windows import LongDocs

# A window wide enough to hold any text whole: ``truncate`` cuts its first window from it (see ``_units``).
_WHOLE = 1 << 30


@dataclass(frozen=True)
class TermSource:
    """One document term's weight and where it comes from. ``token`` / ``word``: character spans in the original
    text of the arg-max token and of its whole word (None when that token is [CLS]/[SEP]); ``unit``: which window
    (0-based, in text order); ``position``: the token's index in that window's ids ([CLS] = 0)."""

    term: int
    weight: float
    token: tuple[int, int] | None
    word: tuple[int, int] | None
    unit: int
    position: int

    def record(self) -> dict:
        return {
            "term": self.term,
            "weight": self.weight,
            "token": list(self.token) if self.token else None,
            "word": list(self.word) if self.word else None,
            "unit": self.unit,
            "position": self.position,
        }


@dataclass
class _Unit:
    ids: list[int]
    lead: int  # special tokens before the content tokens (offsets[i] is the span of ids[lead + i])
    offsets: np.ndarray  # (n, 2) content tokens' char spans in the original text
    words: np.ndarray  # (n, 2) their words' spans
    span: tuple[int, int]


def term_sources(
    encoder,
    text: str,
    terms: Sequence[int] | np.ndarray,
    long_docs: LongDocs,
    span: tuple[int, int] | None = None,
) -> list[TermSource | None]:
    """The source of each term of ``text``'s document vector (None where the term's weight is 0).

    ``long_docs``: the index's document setting (``truncate``: the first ``max_length`` tokens; ``max`` /
    ``passages``: its windows, the max over all of them). ``span``: for a ``passages`` index, the character span
    of the passage that ranked the hit: only that window is used. ``encoder`` needs ``token_logits`` (the torch
    ``SpladeEncoder`` or the numpy ``LiteEncoder``).
    """
    if not callable(getattr(encoder, "token_logits", None)):
        raise InputError(
            f"highlights need the torch or numpy encoder (SpladeEncoder or LiteEncoder); "
            f"{type(encoder).__name__} cannot give per-token logits"
        )
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    terms_arr = np.asarray(terms, dtype=np.int64).reshape(-1)
    if terms_arr.size and (terms_arr.min() < 0 or terms_arr.max() >= encoder.vocab_size):
        raise InputError(f"term ids must be in [0, {encoder.vocab_size})")
    units = _units(encoder, text, long_docs)
    if span is not None:
        want = (int(span[0]), int(span[1]))
        picked = [(i, u) for i, u in enumerate(units) if u.span == want]
        if not picked:
            raise InputError(
                f"no window of this text has the span {list(want)}: the text or the index's window setting changed"
            )
        units = picked  # type: ignore[assignment]
    else:
        units = list(enumerate(units))  # type: ignore[assignment]
    if not terms_arr.size or not units:
        return [None] * len(terms_arr)
    return _pick(encoder, terms_arr, units)  # type: ignore[arg-type]


def _pick(encoder, terms: np.ndarray, units: list[tuple[int, _Unit]]) -> list[TermSource | None]:
    """Per term: the best (unit, token) by max logit, or by summed activation for a sum-pooling model."""
    spec = encoder.spec
    summed = spec.pooling_strategy == "sum"
    best = np.full(len(terms), -np.inf, np.float64)
    where = np.zeros((len(terms), 2), np.int64)  # (unit, position)
    for k, u in units:
        logits = np.asarray(encoder.token_logits(u.ids, terms), np.float32)
        if summed:
            acts = activate(logits, spec.activation)
            value = acts.sum(axis=0, dtype=np.float32)
            pos = acts.argmax(axis=0)
        else:
            pos = logits.argmax(axis=0)
            value = logits[pos, np.arange(len(terms))]
        better = value > best
        best[better] = value[better]
        where[better, 0] = k
        where[better, 1] = pos[better]
    weights = best.astype(np.float32) if summed else activate(best.astype(np.float32), spec.activation)
    by_unit = dict(units)
    out: list[TermSource | None] = []
    for t, w, (k, p) in zip(terms.tolist(), weights.tolist(), where.tolist()):
        if not w > 0.0:
            out.append(None)
            continue
        u = by_unit[k]
        c = p - u.lead
        token = word = None
        if 0 <= c < len(u.offsets) and u.offsets[c, 1] > u.offsets[c, 0]:
            token = (int(u.offsets[c, 0]), int(u.offsets[c, 1]))
            word = (int(u.words[c, 0]), int(u.words[c, 1]))
        out.append(TermSource(int(t), float(w), token, word, int(k), int(p)))
    return out


def activate(x: np.ndarray, activation: str) -> np.ndarray:
    """SPLADE activation in numpy (``pooling.activate``): log1p(relu(x)), applied twice for 'log1p_relu'."""
    y = np.log1p(np.maximum(x, np.float32(0.0)))
    return np.log1p(y) if activation == "log1p_relu" else y


def _units(encoder, text: str, long_docs: LongDocs) -> list[_Unit]:
    """The windows the index encoded for ``text``, with token offsets. ``truncate`` takes the text whole and cuts
    it as truncation does (the first ``max_length`` tokens, specials included) — the first ``max`` window may
    end earlier, at a word start."""
    if not text.strip():
        return []
    truncate = long_docs.strategy == "truncate"
    plan = LongDocs("max", _WHOLE if truncate else long_docs.window, long_docs.stride)
    units = encoder.plan_units([text], "document", plan)
    out = []
    for ids, offs, words, span in zip(units.ids, units.offsets, units.words, units.spans):
        if ids is None or offs is None or words is None:
            continue
        lead = _lead(encoder)
        trail = len(ids) - lead - len(offs)
        if trail < 0:
            raise InputError("the tokenizer's special tokens do not match its windows")  # pragma: no cover
        if truncate:
            cap = min(len(offs), max(0, encoder.max_length - lead - trail))
            ids = list(ids[: lead + cap]) + list(ids[lead + len(offs) :])
            offs, words = offs[:cap], words[:cap]
            span = (int(offs[0, 0]), int(offs[-1, 1])) if len(offs) else (0, len(text))
        out.append(_Unit(list(ids), lead, offs, words, (int(span[0]), int(span[1]))))
        if truncate:
            break
    return out


def _lead(encoder) -> int:
    """Special tokens the tokenizer puts before the text ([CLS]: 1 for BERT), from its own template."""
    cached = getattr(encoder, "_provenance_lead", None)
    if cached is not None:
        return cached
    tok = encoder._window_tokenizer
    if tok is None:
        raise InputError(f"{encoder.name}: highlights need a fast (tokenizers) tokenizer")
    with encoder._tok_lock:
        mask = tok.encode("a").special_tokens_mask
    lead = 0
    while lead < len(mask) and mask[lead]:
        lead += 1
    encoder._provenance_lead = lead
    return lead
