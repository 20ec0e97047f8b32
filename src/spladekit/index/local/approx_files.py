"""The files of a segment's approximate-search structure (written by ``approx_build``): their names, the
memory-mapped view search reads (``ApproxView``, transposing segments written block-major), and the deep check of
their consistency (``structure_problem``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .approx_summaries import to_component_major

NAMES = (
    "tblk",
    "bptr",
    "bdocs",
    "sscale",
    "tcomp",
    "ccomp",
    "tent",
    "cptr",
    "cblk",
    "cq",
    "fptr",
    "fterms",
    "fw",
)
FILES = tuple(f"ax_{n}.npy" for n in NAMES)
# segments written before summaries were stored component-major (meta "summaries" absent): transposed on load
OLD_NAMES = ("tblk", "bptr", "bdocs", "sptr", "sterms", "sq", "sscale", "fptr", "fterms", "fw")
LAYOUT = "component"
COMPONENT_NAMES = (
    "tcomp",
    "ccomp",
    "tent",
    "cptr",
    "cblk",
    "cq",
)  # what to_component_major returns, in order


@dataclass
class ApproxView:
    """A segment's approximate structure, memory-mapped (plain ndarray views); summaries component-major."""

    tblk: np.ndarray
    bptr: np.ndarray
    bdocs: np.ndarray
    sscale: np.ndarray
    tcomp: np.ndarray
    ccomp: np.ndarray
    tent: np.ndarray
    cptr: np.ndarray
    cblk: np.ndarray
    cq: np.ndarray
    fptr: np.ndarray
    fterms: np.ndarray
    fw: np.ndarray

    @classmethod
    def load(cls, folder: Path, arr, layout: str | None = LAYOUT) -> ApproxView:
        """``layout``: the segment meta's ``approx["summaries"]`` (None: written block-major, transposed here)."""
        if layout == LAYOUT:
            return cls(*(np.asarray(arr(f)) for f in FILES))
        a = {n: np.asarray(arr(f"ax_{n}.npy")) for n in OLD_NAMES}
        a.update(
            zip(
                COMPONENT_NAMES,
                to_component_major(a["tblk"], a["sptr"], a["sterms"].astype(np.int64), a["sq"]),
            )
        )
        return cls(**{n: a[n] for n in NAMES})

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in ``NAMES`` order, as the search kernel takes them."""
        return tuple(getattr(self, n) for n in NAMES)


def structure_problem(
    folder: Path, load, n_docs: int, dim: int, nnz: int, compact: bool, layout: str | None = LAYOUT
) -> str | None:
    """``"file: problem"`` for the first inconsistency of a segment's approximate structure, or None (deep check;
    ``layout`` as for ``ApproxView.load``)."""
    names = NAMES if layout == LAYOUT else OLD_NAMES
    a = {}
    for name in names:
        f = f"ax_{name}.npy"
        x = load(folder / f)
        if x is None:
            return f"{folder / f}: unreadable"
        a[name] = np.asarray(x)
    nb_ = len(a["bptr"]) - 1

    def ptr_bad(p, count, end):
        p = p.astype(np.int64)
        return p.ndim != 1 or len(p) != count + 1 or p[0] != 0 or (np.diff(p) < 0).any() or p[-1] != end

    def above(x, limit):
        return len(x) > 0 and int(x.max()) >= limit

    if layout == LAYOUT:
        per_list = int(np.diff(a["tblk"].astype(np.int64)).max()) if len(a["tblk"]) > 1 else 0
        summaries = (
            ("tcomp", ptr_bad(a["tcomp"], dim, len(a["ccomp"])) or above(a["ccomp"], dim)),
            ("tent", ptr_bad(a["tent"], dim, len(a["cblk"])) or len(a["cq"]) != len(a["cblk"])),
            ("cptr", len(a["cptr"]) != len(a["ccomp"]) or above(a["cptr"], max(1, len(a["cblk"])))),
            ("cblk", above(a["cblk"], per_list)),
        )
    else:
        summaries = (
            ("sptr", ptr_bad(a["sptr"], nb_, len(a["sterms"])) or len(a["sq"]) != len(a["sterms"])),
            ("sterms", above(a["sterms"], dim)),
        )
    checks = (
        ("tblk", ptr_bad(a["tblk"], dim, nb_) if nb_ >= 0 else True),
        ("bptr", ptr_bad(a["bptr"], nb_, len(a["bdocs"]))),
        *summaries,
        ("sscale", len(a["sscale"]) != nb_ or not np.isfinite(a["sscale"]).all() or (a["sscale"] <= 0).any()),
        ("bdocs", above(a["bdocs"], n_docs)),
        ("fptr", ptr_bad(a["fptr"], n_docs, nnz)),
        ("fterms", len(a["fterms"]) != nnz or above(a["fterms"], dim)),
        ("fw", len(a["fw"]) != nnz or a["fw"].dtype != (np.uint8 if compact else np.float32)),
    )
    for name, bad in checks:
        if bad:
            return f"{folder / f'ax_{name}.npy'}: approximate-search structure inconsistent"
    return None
