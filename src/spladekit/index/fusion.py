"""Fusing rankings: reciprocal rank fusion and normalised score combination, and the ``Hybrid`` setting that
names one, read in one place (`check_hybrid`) by the index, the CLI, ``eval`` and the server.

``Index.search(query, hybrid=...)`` takes the SPLADE and the BM25 top ``depth`` of one text query and fuses them
here; ``eval`` fuses its runs with the same functions, so what it reports is what search does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InputError

Ranking = list[tuple[str, float]]

RRF_K = 60  # RRF's rank constant (Cormack et al. 2009; Elasticsearch's default)
DEFAULT_WEIGHT = 0.5
DEFAULT_DEPTH = 100  # hits taken from each run: max(k, this) unless a depth is given
METHODS = {"rrf": "rrf", "convex": "convex", "linear": "convex"}
NORMALIZERS = ("minmax", "l2", "none")
_KEYS = {"rrf": {"method", "k", "depth"}, "convex": {"method", "weight", "normalize", "depth"}}


@dataclass(frozen=True)
class Hybrid:
    """How ``search(..., hybrid=...)`` fuses the SPLADE ranking with the BM25 ranking of the same text.

    - ``method``: ``"rrf"``, score = Σ 1 / (``k`` + rank) over the two runs (ranks from 1); or ``"convex"``
      (alias ``"linear"``), score = ``weight`` x norm(SPLADE) + (1 - ``weight``) x norm(BM25);
    - ``k``: RRF's rank constant (default 60);
    - ``weight``: convex only, the share of SPLADE in [0, 1] (1: SPLADE alone, 0: BM25 alone; default 0.5);
    - ``normalize``: convex only, how each run's scores reach one scale: ``"minmax"`` (default; over the run's top
      ``depth``: its best hit 1, its last 0), ``"l2"`` (divided by the run's L2 norm) or ``"none"``;
    - ``depth``: hits taken from each run before fusing (None: max(k of the search, 100)).

    A document absent from one run's top ``depth`` contributes nothing for that run. The constructor checks the
    fields; `check_hybrid` turns every accepted form (a name, a dict, a ``Hybrid``) into one.
    """

    method: str = "rrf"
    k: int = RRF_K
    weight: float = DEFAULT_WEIGHT
    normalize: str = "minmax"
    depth: int | None = None

    def __post_init__(self) -> None:
        method = METHODS.get(self.method) if isinstance(self.method, str) else None
        if method is None:
            raise InputError(f"hybrid method must be one of {', '.join(METHODS)}, got {self.method!r}")
        object.__setattr__(self, "method", method)
        if not _is_int(self.k) or self.k < 1:
            raise InputError(f"hybrid k (RRF rank constant) must be a positive integer, got {self.k!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0.0 <= float(w) <= 1.0):
            raise InputError(f"hybrid weight (share of SPLADE) must be a number in [0, 1], got {w!r}")
        object.__setattr__(self, "weight", float(w))
        if self.normalize not in NORMALIZERS:
            raise InputError(
                f"hybrid normalize must be one of {', '.join(NORMALIZERS)}, got {self.normalize!r}"
            )
        if self.depth is not None and (not _is_int(self.depth) or self.depth < 1):
            raise InputError(f"hybrid depth must be a positive integer or None, got {self.depth!r}")

    def depth_for(self, k: int) -> int:
        """Hits taken from each run for a search of ``k`` results."""
        return self.depth if self.depth is not None else max(k, DEFAULT_DEPTH)

    def record(self) -> dict:
        """The setting as JSON, with only the fields its method uses."""
        out: dict = {"method": self.method}
        if self.method == "rrf":
            out["k"] = self.k
        else:
            out.update(weight=self.weight, normalize=self.normalize)
        out["depth"] = self.depth
        return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_hybrid(value) -> Hybrid | None:
    """The one reading of a ``hybrid`` argument: None or False (no fusion), True (RRF with defaults), a method name
    (``"rrf"``, ``"convex"``, ``"linear"``), a dict such as ``{"method": "rrf", "k": 60}`` or ``{"method":
    "convex", "weight": 0.5, "normalize": "minmax"}`` (``depth`` in either), or a ``Hybrid``. Anything else, an
    unknown key or a field of the other method is an `InputError`."""
    if value is None or value is False:
        return None
    if value is True:
        return Hybrid()
    if isinstance(value, Hybrid):
        return value
    if isinstance(value, str):
        return Hybrid(method=value.strip().lower())
    if isinstance(value, Mapping):
        fields = dict(value)
        method = fields.get("method", "rrf")
        h = Hybrid(method=method.strip().lower() if isinstance(method, str) else method)
        extra = set(fields) - _KEYS[h.method]
        if extra:
            raise InputError(
                f"hybrid {h.method} does not take {', '.join(sorted(map(str, extra)))} "
                f"(it takes {', '.join(sorted(_KEYS[h.method]))})"
            )
        if isinstance(fields.get("normalize"), str):
            fields["normalize"] = fields["normalize"].strip().lower()
        return Hybrid(**{**fields, "method": h.method})
    raise InputError(
        f"hybrid must be None, 'rrf', 'convex', a dict like {{'method': 'rrf', 'k': 60}} or a Hybrid, "
        f"got {type(value).__name__}"
    )


# ---------------------------------------------------------------------- fusion
@dataclass
class Fused:
    """One fused result: its score and, per run, its rank (from 1) and score there (None: not in that run)."""

    id: str
    score: float
    splade: tuple[int, float, float | None] | None  # (rank, score, normalised score or None)
    bm25: tuple[int, float, float | None] | None

    def components(self) -> dict:
        """What ``SearchHit.hybrid`` carries: why the hit is where it is."""

        def part(x):
            if x is None:
                return None
            out = {"rank": x[0], "score": x[1]}
            if x[2] is not None:
                out["normalized"] = x[2]
            return out

        return {"splade": part(self.splade), "bm25": part(self.bm25)}


def ordered(run: Ranking) -> Ranking:
    """A run by score descending, ties by id: the rank a document gets does not depend on storage order."""
    return sorted(run, key=lambda x: (-x[1], x[0]))


def rrf_scores(runs: Sequence[Ranking], c: int = RRF_K) -> dict[str, float]:
    """RRF of one query's runs (each in rank order): Σ_runs 1 / (c + rank of d), ranks from 1."""
    acc: dict[str, float] = {}
    for run in runs:
        for rank, (d, _) in enumerate(run, start=1):
            acc[d] = acc.get(d, 0.0) + 1.0 / (c + rank)
    return acc


def reciprocal_rank_fusion(
    runs: Sequence[Mapping[str, Ranking]], k: int = 1000, c: int = RRF_K
) -> dict[str, Ranking]:
    """RRF (Cormack et al. 2009) of whole runs (query id -> ranking): score(d) = Σ_runs 1 / (c + rank of d), rank
    from 1; ties by id."""
    fused: dict[str, Ranking] = {}
    qids = list(dict.fromkeys(q for run in runs for q in run))
    for q in qids:
        acc = rrf_scores([run.get(q, []) for run in runs], c)
        fused[q] = sorted(acc.items(), key=lambda x: (-x[1], x[0]))[:k]
    return fused


def normalized(scores: list[float], how: str) -> list[float]:
    """One run's scores on a common scale: ``minmax`` (best 1, last 0; all equal: 1), ``l2`` or ``none``."""
    if not scores or how == "none":
        return list(scores)
    if how == "minmax":
        lo, hi = min(scores), max(scores)
        return [(s - lo) / (hi - lo) if hi > lo else 1.0 for s in scores]
    norm = math.sqrt(sum(s * s for s in scores))
    return [s / norm if norm > 0 else 0.0 for s in scores]


def fuse(splade: Ranking, bm25: Ranking, hybrid: Hybrid, k: int) -> list[Fused]:
    """The top ``k`` of one query's SPLADE and BM25 runs (each its top ``depth``) fused as ``hybrid`` says; ties
    by id."""
    runs = [ordered(splade), ordered(bm25)]
    parts: list[dict[str, tuple[int, float, float | None]]] = []
    if hybrid.method == "rrf":
        scores = rrf_scores(runs, hybrid.k)
        for run in runs:
            parts.append({d: (r, s, None) for r, (d, s) in enumerate(run, start=1)})
    else:
        scores = {}
        for run, w in zip(runs, (hybrid.weight, 1.0 - hybrid.weight)):
            norm = normalized([s for _, s in run], hybrid.normalize)
            parts.append({d: (r, s, n) for r, ((d, s), n) in enumerate(zip(run, norm), start=1)})
            for (d, _), n in zip(run, norm):
                scores[d] = scores.get(d, 0.0) + w * n
    top = sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]
    return [Fused(d, s, parts[0].get(d), parts[1].get(d)) for d, s in top]
