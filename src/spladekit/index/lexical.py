"""The lexical side of hybrid search: one analyzer (bm25s' tokenizer) and the BM25 formula, for every user.

Text is analysed exactly as bm25s does for the evaluation baseline: lowercase, words of two or more word
characters, English stopwords removed, then the PyStemmer Snowball stemmer (when installed). The index's BM25
view and ``eval``'s ``BM25Baseline`` both call `analyze`, so a term means the same thing on both sides. Scores are
the Lucene variant of BM25 (k1 = 1.2, b = 0.75) as bm25s computes it: ``idf = log(1 + (N - df + 0.5) / (df +
0.5))`` times ``tf / (tf + k1 (1 - b + b dl / avgdl))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

K1 = 1.2
B = 0.75
METHOD = "lucene"
STOPWORDS = "en"


def stemmer():
    """The English Snowball stemmer (PyStemmer), or None when PyStemmer is not installed."""
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


_STEMMER = stemmer()


def settings() -> dict:
    """What a BM25 view records: the analyzer and the formula (an index refuses to mix two analyzers)."""
    return {
        "method": METHOD,
        "k1": K1,
        "b": B,
        "stopwords": STOPWORDS,
        "stemmer": "english" if _STEMMER is not None else None,
    }


def check_settings(recorded: dict, where: str) -> None:
    """Refuse a BM25 view analysed otherwise than this process would (e.g. built with PyStemmer, read without)."""
    mine = settings()
    if recorded != mine:
        raise InputError(
            f"{where}: its BM25 view was built with {recorded}, this process analyses text with {mine} "
            "(install PyStemmer, or rebuild the view)"
        )


def analyze(texts: Sequence[str], ids: bool = False):
    """bm25s' tokenisation of ``texts``: per text its list of stems; with ``ids``, bm25s' ``Tokenized`` (ids per
    text and the stem -> id vocabulary), which is what ``bm25s.BM25.index`` takes."""
    import bm25s

    if not texts:
        return bm25s.tokenization.Tokenized(ids=[], vocab={}) if ids else []
    return bm25s.tokenize(
        list(texts), stopwords=STOPWORDS, stemmer=_STEMMER, show_progress=False, return_ids=ids
    )


def query_terms(text: str) -> tuple[list[str], np.ndarray]:
    """A query's distinct stems (first-appearance order) and how often each occurs: bm25s scores a repeated query
    token once per occurrence."""
    counts: dict[str, int] = {}
    for t in analyze([text])[0]:
        counts[t] = counts.get(t, 0) + 1
    return list(counts), np.fromiter(counts.values(), np.float32, len(counts))


def idf(df: np.ndarray, n: int) -> np.ndarray:
    """Lucene idf per term (float64, as bm25s computes it before storing float32)."""
    df = np.asarray(df, np.float64)
    return np.log(1.0 + (n - df + 0.5) / (df + 0.5))
