"""Match highlights for a hit: which words of the document carry the matched terms, and a snippet around them.

Pure functions over a document's text and ``encode.provenance.term_sources`` (no index access): the index calls
``term_sources`` + ``highlight`` for each hit it returns, with the matched terms (the query's terms that have a
non-zero weight in the document). Everything returned is JSON-safe; the CLI renders it with ``render_snippet``
(rich markup) and an HTML client with ``marked_text(snippet, "<em>", "</em>", escape=html.escape)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..encode.provenance import TermSource

ELLIPSIS = "…"


def highlight(
    text: str,
    q_terms: Sequence[int],
    q_weights: Sequence[float],
    sources: Sequence[TermSource | None],
    vocab: Sequence[str],
    snippet_chars: int = 240,
) -> dict:
    """The matched terms, best first, and the snippet of about ``snippet_chars`` characters that holds the largest
    total contribution of matched words.

    ``sources[i]`` is the source of ``q_terms[i]`` in this document (None: not in it). Each term gives
    ``{"term", "score" (query weight × document weight), "weight" (document weight), "start", "end" (its word's
    char span; None when the weight comes from [CLS]/[SEP]), "word"}``; the snippet is ``{"text", "start", "end"
    (char span in the document, cut at word boundaries), "doc_chars", "marks" ([[s, e], ...] in snippet text)}``.
    """
    if len(q_terms) != len(q_weights) or len(q_terms) != len(sources):
        raise ValueError("q_terms, q_weights and sources must have the same length")
    terms = []
    for t, q, src in zip(q_terms, q_weights, sources):
        if src is None or not src.weight > 0:
            continue
        start, end = src.word if src.word is not None else (None, None)
        terms.append(
            {
                "term": vocab[int(t)],
                "score": float(q) * float(src.weight),
                "weight": float(src.weight),
                "start": start,
                "end": end,
                "word": text[start:end] if start is not None else None,
            }
        )
    terms.sort(key=lambda d: (-d["score"], d["term"]))
    return {"terms": terms, "snippet": snippet(text, terms, snippet_chars)}


def snippet(text: str, terms: Sequence[dict], snippet_chars: int = 240) -> dict:
    """The window of about ``snippet_chars`` characters with the largest total score of the matched words (``terms``
    as ``highlight`` gives them) fully inside, widened evenly around them and cut at word boundaries. Every
    occurrence of a matched word counts and is marked, not only the one that set the term's weight."""
    size = max(1, int(snippet_chars))
    scores = _occurrences(text, terms)
    words = sorted(scores)
    lo, hi = _best_cluster(words, scores, size)
    if lo is None:  # nothing located: the start of the text
        lo, hi = _content_start(text), _content_start(text)
    start, end = _widen(text, lo, hi, size)
    marks = _merge([(max(s, start) - start, min(e, end) - start) for s, e in words if s < end and e > start])
    return {"text": text[start:end], "start": start, "end": end, "doc_chars": len(text), "marks": marks}


def _occurrences(text: str, terms: Sequence[dict]) -> dict[tuple[int, int], float]:
    """Span -> score of every occurrence (whole word, any case) of the words that gave matched terms their weight;
    a word scores the sum of its terms' scores."""
    import re

    by_word: dict[str, float] = {}
    scores: dict[tuple[int, int], float] = {}
    for d in terms:
        if d.get("start") is not None and d["end"] > d["start"]:
            key = (int(d["start"]), int(d["end"]))
            scores[key] = scores.get(key, 0.0) + float(d["score"])
            word = text[key[0] : key[1]].lower()
            by_word[word] = by_word.get(word, 0.0) + float(d["score"])
    for word, score in by_word.items():
        for m in re.finditer(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text, flags=re.IGNORECASE):
            if m.span() not in scores:
                scores[m.span()] = score
    return scores


def _best_cluster(
    words: list[tuple[int, int]], scores: dict[tuple[int, int], float], size: int
) -> tuple[int | None, int | None]:
    """Span [first start, last end] of the run of words fitting in ``size`` characters with the largest total score
    (ties: the earliest); a single word longer than ``size`` is a run of its own."""
    best, span = -1.0, (None, None)
    j = 0
    total = 0.0
    for i, (s, _) in enumerate(words):
        if j < i:
            j, total = i, 0.0
        while j < len(words) and (words[j][1] - s <= size or j == i):
            total += scores[words[j]]
            j += 1
        far = max(e for _, e in words[i:j])
        if total > best + 1e-12:
            best, span = total, (s, far)
        total -= scores[words[i]]
    return span


def _widen(text: str, lo: int, hi: int, size: int) -> tuple[int, int]:
    """[start, end) of about ``size`` characters containing [lo, hi), the slack split evenly on both sides (moved
    to the other side at a text end), then moved inwards to word boundaries and stripped of whitespace."""
    n = len(text)
    slack = max(0, size - (hi - lo))
    start = max(0, lo - slack // 2)
    end = min(n, hi + (slack - (lo - start)))
    start = max(0, min(start, end - size))
    if start > 0 and not text[start - 1].isspace():  # mid-word: move to the next word's start
        while start < lo and not text[start].isspace():
            start += 1
    if end < n and not text[end].isspace():  # mid-word: back to the previous word's end
        while end > hi and not text[end - 1].isspace():
            end -= 1
    while start < lo and text[start].isspace():
        start += 1
    while end > hi and text[end - 1].isspace():
        end -= 1
    return start, end


def _content_start(text: str) -> int:
    return len(text) - len(text.lstrip())


def _merge(spans: list[tuple[int, int]]) -> list[list[int]]:
    """Overlapping or touching spans merged, in order."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def marked_text(
    snippet: dict,
    open: str = "<em>",
    close: str = "</em>",
    *,
    escape: Callable[[str], str] | None = None,
    ellipsis: str = ELLIPSIS,
) -> str:
    """The snippet's text with each mark wrapped in ``open`` / ``close``, ``escape`` applied to the text between
    (e.g. ``html.escape``), and ``ellipsis`` where the snippet does not reach a document end."""
    esc = escape or (lambda s: s)
    head, pieces, tail = _pieces(snippet, ellipsis)
    out = [head]
    for i, piece in enumerate(pieces):
        if i % 2:
            out += [open, esc(piece), close]
        else:
            out.append(esc(piece))
    return "".join(out + [tail])


def render_snippet(snippet: dict, mark: tuple[str, str] = ("[bold yellow]", "[/]")) -> str:
    """The snippet as rich markup for the terminal: marks styled, the document's own text escaped (its brackets
    and backslashes print as they are)."""
    from rich.markup import escape

    def esc(piece: str, before_tag: bool) -> str:
        # rich reads n backslashes before a tag as n // 2: double a trailing run only where a tag follows
        core = piece.rstrip("\\")
        run = len(piece) - len(core)
        return escape(core) + "\\" * (2 * run if before_tag else run)

    head, pieces, tail = _pieces(snippet, ELLIPSIS)
    out = [head]
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        text = esc(piece, i < last)
        out += [mark[0], text, mark[1]] if i % 2 else [text]
    return "".join(out + [tail])


def _pieces(snippet: dict, ellipsis: str) -> tuple[str, list[str], str]:
    """(leading ellipsis, [plain, marked, plain, ..., plain], trailing ellipsis) of a snippet."""
    text = snippet["text"]
    pieces, at = [], 0
    for s, e in snippet.get("marks", []):
        pieces += [text[at:s], text[s:e]]
        at = e
    pieces.append(text[at:])
    head = ellipsis if ellipsis and snippet.get("start", 0) > 0 else ""
    doc_chars = snippet.get("doc_chars")
    tail = ellipsis if ellipsis and doc_chars is not None and snippet.get("end", 0) < doc_chars else ""
    return head, pieces, tail
