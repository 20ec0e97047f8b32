"""Long documents: one setting (``LongDocs``) and the token windows it cuts a text into.

- ``truncate``: the first ``max_length`` tokens, as every SPLADE encoder does by default.
- ``max``: windows of ``window`` tokens overlapping by ``stride``, each encoded, then the per-term max over the
  windows: SPLADE's pooling is already a max over tokens, so this is the same pooling over the whole text.
- ``passages``: the same windows, each kept as a passage of its document (the index ranks a document by its best
  passage).

A window is ``[CLS] tokens [SEP]`` (the tokenizer's own template), never splits a word piece from its word, and
carries its character span in the original text. A text that fits in one window gets exactly the tokens that
truncation gives it, and is encoded in the same batches under every strategy (``Units.batches``), so its vector is
bit-identical to ``truncate``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from ..errors import InputError
from ..sparse import max_merge

Strategy = Literal["truncate", "max", "passages"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# Tokens two neighbouring windows share: context for the words at a cut. Every shared token is encoded twice, and a
# SPLADE model's cost is about linear in tokens, so 32 of 512 (+6-7% tokens on long documents) keeps the cost per
# document token within ~10% of a one-window document's (bench/long_docs.py --cost); 64 cost +13-14%.
DEFAULT_STRIDE = 32
MIN_WINDOW = 8


@dataclass(frozen=True)
class LongDocs:
    """How documents longer than the model's window are encoded (recorded by an index, used by every add)."""

    strategy: Strategy = "max"
    window: int | None = None  # tokens per window, special tokens included; None: the model's max_length
    stride: int = DEFAULT_STRIDE

    def record(self) -> dict:
        return {"strategy": self.strategy, "window": self.window, "stride": self.stride}

    @classmethod
    def from_record(cls, rec: Any) -> LongDocs:
        """What an index or report recorded; nothing recorded (an index made before windows) means truncate."""
        if not rec:
            return TRUNCATE
        return check_long_docs(rec.get("strategy", "truncate"), rec.get("window"), rec.get("stride"))

    def describe(self, max_length: int) -> str:
        if self.strategy == "truncate":
            return f"truncate at {max_length} tokens"
        return f"{self.strategy} over windows of {self.window or max_length} tokens, overlap {self.stride}"


TRUNCATE = LongDocs("truncate")


def check_long_docs(
    strategy: str | LongDocs | None = "max",
    window: int | None = None,
    stride: int | None = None,
    max_length: int | None = None,
) -> LongDocs:
    """The one rule for long-document settings: a known strategy, ``MIN_WINDOW`` ≤ window ≤ the model's
    ``max_length`` (its position embeddings end there), 0 ≤ stride ≤ window / 2."""
    if isinstance(strategy, LongDocs):
        strategy, window, stride = strategy.strategy, strategy.window, strategy.stride
    strategy = strategy or "max"
    if strategy not in STRATEGIES:
        raise InputError(
            f"unknown long-document strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}"
        )
    for name, v in (("window", window), ("stride", stride)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise InputError(f"{name} must be an integer, got {v!r}")
    if window is not None:
        window = int(window)
        if window < MIN_WINDOW:
            raise InputError(f"window must be at least {MIN_WINDOW} tokens, got {window}")
        if max_length is not None and window > max_length:
            raise InputError(f"window {window} is longer than the model's max_length {max_length}")
    if stride is None:  # the default overlap, at most a quarter of a small window
        stride = min(DEFAULT_STRIDE, (window or max_length or 4 * DEFAULT_STRIDE) // 4)
    stride = int(stride)
    if stride < 0:
        raise InputError(f"stride must be 0 or more, got {stride}")
    limit = (window or max_length or 0) // 2
    if (window or max_length) and stride > limit:
        raise InputError(f"stride {stride} is more than half the window ({limit})")
    return LongDocs(strategy, window, stride)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- cutting a text into windows
def cut_points(word_ids: list[int | None], cap: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) of each window over ``n`` content tokens (``word_ids`` of the content tokens): at most ``cap``
    tokens, neighbours overlapping by about ``stride``, cuts moved back to the start of a word so that a word's
    pieces stay together (a word longer than a window is the only one ever split)."""
    n = len(word_ids)
    if n <= cap:
        return [(0, n)]
    out = []
    s = 0
    while True:
        e = min(s + cap, n)
        if e < n:
            e = _word_start(word_ids, e, s + 1)
        out.append((s, e))
        if e >= n:
            return out
        s = _word_start(word_ids, max(e - stride, s + 1), s + 1)


def _word_start(word_ids: list[int | None], i: int, low: int) -> int:
    """``i`` moved back to the first piece of its word, not below ``low``."""
    w = word_ids[i]
    if w is None:
        return i
    j = i
    while j > low and word_ids[j - 1] == w:
        j -= 1
    # the word began before ``low``: it cannot be kept whole, cut at ``i``
    return i if word_ids[j - 1] == w else j


@dataclass
class Units:
    """What an encoder runs for a batch of texts: token ids per unit (a whole text or one window), which text
    each unit belongs to, its character span, and per unit the token offsets (for match provenance)."""

    ids: list[list[int] | None]
    owner: np.ndarray
    spans: list[tuple[int, int]]
    counts: np.ndarray  # units per text (a text with no tokens has one empty unit)
    fits: np.ndarray  # per unit: its text fits in one window (encoded in the batches truncation gives it)
    truncated: int = 0
    offsets: list[np.ndarray | None] = field(default_factory=list)  # per unit (content tokens' char spans)
    words: list[np.ndarray | None] = field(default_factory=list)  # per unit: word span of each token

    def groups(self) -> list[list[int]]:
        """Non-empty units in run order: units of one-window texts first, then the others, each group longest
        first. Keeping the groups apart makes a short text's batches the same under every strategy."""
        out = []
        for fit in (True, False):
            grp = [i for i, x in enumerate(self.ids) if x is not None and bool(self.fits[i]) == fit]
            grp.sort(key=lambda i: -len(self.ids[i]))  # type: ignore[arg-type]
            if grp:
                out.append(grp)
        return out

    def batches(self, batch_size: int, workers: int = 1) -> list[list[int]]:
        """``groups`` in runs of at most ``batch_size`` units (a run never mixes the two groups). With several
        ``workers`` encoding whole runs in parallel, a group's runs are made a multiple of ``workers`` (evened
        out), so its last round does not leave cores idle."""
        out = []
        for g in self.groups():
            n_runs = -(-len(g) // batch_size)
            if workers > 1 and n_runs > 1 and n_runs % workers:
                n_runs += workers - n_runs % workers
            size = -(-len(g) // n_runs)
            out += [g[s : s + size] for s in range(0, len(g), size)]
        return out

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.ids if x is not None)

    @property
    def windowed(self) -> int:
        """Texts cut into more than one window."""
        return int((self.counts > 1).sum())

    def merge(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One row per text: the per-term max over its units' rows (a one-unit text keeps its row as is)."""
        return merge_units(rows, self.counts)


def merge_units(
    rows: list[tuple[np.ndarray, np.ndarray]], counts: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows of consecutive units, ``counts[t]`` of them for text ``t``, merged into one row per text (term max)."""
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    return [max_merge(rows[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]


def whole_text_units(ids: list[list[int] | None], truncated: list[bool], texts: list[str]) -> Units:
    """Units of ``truncate``: one per text, its first ``max_length`` tokens."""
    n = len(ids)
    return Units(
        ids=list(ids),
        owner=np.arange(n),
        spans=[(0, len(t)) for t in texts],
        counts=np.ones(n, np.int64),
        fits=~np.asarray(truncated, bool) if n else np.zeros(0, bool),
        truncated=int(sum(truncated)),
        offsets=[None] * n,
        words=[None] * n,
    )


def window_units(
    encodings: list, texts: list[str], model_texts: list[str], prompt: str, cap_total: int, stride: int
) -> Units:
    """Units of ``max`` / ``passages`` from untruncated ``tokenizers`` encodings of ``model_texts`` (None for an
    empty text). ``cap_total``: tokens per window, special tokens included."""
    ids: list[list[int] | None] = []
    owner, spans, counts, fits, offs, words = [], [], [], [], [], []
    for t, (enc, text, mtext) in enumerate(zip(encodings, texts, model_texts)):
        if enc is None:
            ids.append(None)
            owner.append(t)
            spans.append((0, 0))
            counts.append(1)
            fits.append(True)
            offs.append(None)
            words.append(None)
            continue
        all_ids = list(enc.ids)
        special = enc.special_tokens_mask
        lead = 0
        while lead < len(all_ids) and special[lead]:
            lead += 1
        trail = 0
        while trail < len(all_ids) - lead and special[len(all_ids) - 1 - trail]:
            trail += 1
        body = slice(lead, len(all_ids) - trail)
        cmap = char_map(text, mtext, prompt)
        tok_off = _to_source(np.asarray(enc.offsets[body], np.int64).reshape(-1, 2), cmap, len(prompt))
        wids = list(enc.word_ids[body])
        word_span = _word_spans(wids, tok_off)
        cap = max(1, cap_total - lead - trail)
        cuts = cut_points(wids, cap, stride)
        counts.append(len(cuts))
        one = len(cuts) == 1
        for s, e in cuts:
            ids.append(
                all_ids if one else all_ids[:lead] + all_ids[lead + s : lead + e] + all_ids[body.stop :]
            )
            owner.append(t)
            spans.append((int(tok_off[s, 0]), int(tok_off[e - 1, 1])) if e > s else (0, len(text)))
            fits.append(one)
            offs.append(tok_off[s:e])
            words.append(word_span[s:e])
    return Units(
        ids=ids,
        owner=np.asarray(owner, np.int64),
        spans=spans,
        counts=np.asarray(counts, np.int64),
        fits=np.asarray(fits, bool),
        truncated=0,
        offsets=offs,
        words=words,
    )


def char_map(text: str, model_text: str, prompt: str) -> np.ndarray | None:
    """Position in ``text`` of each character of ``model_text`` (prompt + maybe lower-cased text), or None when
    it is a plain shift by the prompt's length (lower-casing kept every length, the usual case)."""
    if len(model_text) == len(prompt) + len(text):
        return None
    lens = np.fromiter((len(c.lower()) for c in text), np.int64, len(text))
    return np.concatenate([np.zeros(len(prompt), np.int64), np.repeat(np.arange(len(text)), lens)])


def _to_source(off: np.ndarray, cmap: np.ndarray | None, shift: int) -> np.ndarray:
    """Token offsets in the model text -> offsets in the original text."""
    if off.size == 0:
        return off
    if cmap is None:
        return np.maximum(off - shift, 0)
    ends = np.clip(off[:, 1] - 1, 0, len(cmap) - 1)
    return np.stack([cmap[np.clip(off[:, 0], 0, len(cmap) - 1)], cmap[ends] + 1], axis=1)


def _word_spans(word_ids: list[int | None], off: np.ndarray) -> np.ndarray:
    """Per token, the character span of the whole word it is a piece of."""
    out = off.copy()
    n = len(word_ids)
    i = 0
    while i < n:
        j = i + 1
        if word_ids[i] is not None:
            while j < n and word_ids[j] == word_ids[i]:
                j += 1
            out[i:j, 0] = off[i, 0]
            out[i:j, 1] = off[j - 1, 1]
        i = j
    return out
