"""Block summaries of approximate search: the entries a summary keeps (mass, cap, upper bounds), the component-major
layout scoring exactly as the block-major vectors it is built from, and segments written block-major (before the
layout changed) opening and searching as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spladekit.index import Index, Plan
from spladekit.index.local.approx_files import FILES, OLD_NAMES
from spladekit.index.local.approx_summaries import score_summaries, summary_cut, to_component_major
from spladekit.index.local.integrity import folder_sums, seal
from spladekit.sparse import SparseVectors


def _cut(weights: np.ndarray, alpha: float, smax: int):
    dim = 64
    mx = np.zeros(dim, np.float32)
    touched = np.arange(len(weights), dtype=np.int64)
    mx[: len(weights)] = weights
    keepn, kt, scale = summary_cut(
        mx, touched, len(weights), float(weights.sum()), alpha, smax, np.zeros(257)
    )
    return keepn, kt, scale, mx


@pytest.mark.parametrize("alpha", [0.2, 0.4, 0.9, 1.0])
def test_summary_keeps_the_heaviest_entries_holding_alpha_of_the_mass(alpha):
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = rng.gamma(1.2, 1.0, rng.integers(1, 60)).astype(np.float32)
        keepn, kt, scale, mx = _cut(w, alpha, 0)
        assert keepn == len(kt) and list(kt) == sorted(kt)
        assert mx[kt].sum() >= alpha * w.sum() * (1 - 1e-6)
        # the heaviest: nothing left out weighs more than the lightest kept, beyond one code of the byte scale
        out = np.setdiff1d(np.arange(len(w)), kt)
        if len(out) and len(kt):
            assert w[out].max() <= w[kt].min() + scale
        # codes rounded up: a summary is an upper bound of every weight it keeps
        codes = np.minimum(255, np.ceil(mx[kt] / scale - 1e-4))
        assert np.all(codes * scale >= mx[kt] * (1 - 1e-6))


def test_summary_cap_is_exact_even_inside_a_bucket():
    w = np.full(40, 2.0, np.float32)  # one code bucket: the cap has to split it
    keepn, kt, _, _ = _cut(w, 1.0, 7)
    assert keepn == 7 and len(kt) == 7 and len(set(kt.tolist())) == 7
    keepn, kt, _, _ = _cut(np.zeros(0, np.float32), 0.5, 0)
    assert keepn == 0 and len(kt) == 0


def test_component_major_scores_match_block_major_vectors():
    rng = np.random.default_rng(3)
    dim, terms = 300, 5
    tblk = np.array([0, 4, 4, 9, 10, 13] + [13] * (dim - terms), np.int64)
    nblocks = int(tblk[-1])
    vecs = [np.sort(rng.choice(dim, rng.integers(0, 25), replace=False)) for _ in range(nblocks)]
    sptr = np.concatenate([[0], np.cumsum([len(v) for v in vecs])]).astype(np.int64)
    sterms = np.concatenate(vecs).astype(np.int64)
    sq = rng.integers(1, 256, len(sterms)).astype(np.uint8)
    tcomp, ccomp, tent, cptr, cblk, cq = to_component_major(tblk, sptr, sterms, sq)
    assert tent[-1] == len(sterms) == len(cblk) and len(ccomp) == len(cptr) == tcomp[-1]
    for _ in range(30):
        qt = np.sort(rng.choice(dim, rng.integers(1, 80), replace=False)).astype(np.int64)
        qw = rng.random(len(qt)).astype(np.float32)
        qd = np.zeros(dim, np.float32)
        qd[qt] = qw
        for t in range(terms):
            b0, b1 = tblk[t], tblk[t + 1]
            sc = np.zeros(b1 - b0, np.float32)
            score_summaries(t, qt, qw, tcomp, ccomp, tent, cptr, cblk, cq, sc)
            want = [
                float((qd[sterms[sptr[b] : sptr[b + 1]]] * sq[sptr[b] : sptr[b + 1]]).sum())
                for b in range(b0, b1)
            ]
            np.testing.assert_allclose(sc, want, rtol=1e-5, atol=1e-4)


def _to_block_major(folder):
    """Rewrite a segment's summaries as the layout before component-major (one sparse vector a block)."""
    a = {f.removeprefix("ax_").removesuffix(".npy"): np.load(folder / f) for f in FILES}
    nblocks = len(a["bptr"]) - 1
    per_block = [[] for _ in range(nblocks)]
    for t in range(len(a["tcomp"]) - 1):
        c0, c1 = a["tcomp"][t], a["tcomp"][t + 1]
        for c in range(c0, c1):
            e1 = a["tent"][t] + a["cptr"][c + 1] if c + 1 < c1 else a["tent"][t + 1]
            for e in range(a["tent"][t] + a["cptr"][c], e1):
                per_block[a["tblk"][t] + a["cblk"][e]].append((int(a["ccomp"][c]), int(a["cq"][e])))
    rows = [sorted(r) for r in per_block]
    old = {
        "sptr": np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64),
        "sterms": np.array([u for r in rows for u, _ in r], a["ccomp"].dtype),
        "sq": np.array([q for r in rows for _, q in r], np.uint8),
    }
    for name in ("tcomp", "ccomp", "tent", "cptr", "cblk", "cq"):
        (folder / f"ax_{name}.npy").unlink()
    for name in ("sptr", "sterms", "sq"):
        np.save(folder / f"ax_{name}.npy", old[name])
    assert {f"ax_{n}.npy" for n in OLD_NAMES} <= {p.name for p in folder.iterdir()}
    meta = json.loads((folder / "meta.json").read_text())
    del meta["approx"]["summaries"]
    (folder / "meta.json").write_text(json.dumps(meta))


def _approx(idx, qs):
    segs, allowed = idx._prepare_filter(None)
    return [idx._approx_top_k(segs, allowed, t, w, 10, Plan(4, 1.0))[0] for t, w in qs]


def test_segment_written_block_major_opens_checks_and_searches_the_same(light_encoder, tmp_path):
    rng = np.random.default_rng(5)
    dim = light_encoder.vocab_size
    rows = []
    for _ in range(900):
        t = np.unique(rng.choice(400, 30))  # a small vocabulary: every query matches many documents
        rows.append((t, rng.gamma(1.5, 0.6, len(t)).astype(np.float32)))
    docs = SparseVectors.from_rows(rows, dim)
    path = tmp_path / "idx"
    idx = Index.create(path, encoder=light_encoder)
    idx.add_vectors([f"d{i}" for i in range(len(docs))], docs)
    idx.commit()
    qs = [docs.row(i) for i in range(0, 900, 30)]
    before = _approx(idx, qs)
    assert all(len(r) == 10 for r in before)
    folder = idx._segments[0].folder
    idx.close()
    _to_block_major(folder)
    manifest = json.loads((path / "manifest.json").read_text())
    for e in manifest["segments"]:
        if e["name"] == folder.name:
            e["files"] = folder_sums(folder)
    (path / "manifest.json").write_text(json.dumps(seal(manifest), indent=1))  # as the index writes it
    idx = Index.open(path)
    assert idx.check(deep=True).ok
    assert _approx(idx, qs) == before
    idx.close()


def test_an_index_recorded_before_the_new_knobs_keeps_building_as_it_did():
    from spladekit.index.local.approx_build import BuildSettings

    old = {"lam": 0.05, "block": 16, "alpha": 0.5, "cluster": True, "summary_max": 48}
    s = BuildSettings.from_record(old)
    assert (s.summary_terms, s.list_max, s.block, s.alpha) == (32, 0, 16, 0.5)
    assert BuildSettings.from_record(BuildSettings().record()) == BuildSettings()
    assert BuildSettings.from_record(None) == BuildSettings()


def test_global_cut_keeps_the_segments_heaviest_postings(light_encoder, tmp_path):
    """global_postings x vocabulary postings are kept in all, the heaviest of the segment (Seismic's global
    threshold), each list within its own cap: light terms give way to heavy ones."""
    from spladekit.index.local.approx_build import BuildSettings

    rng = np.random.default_rng(9)
    dim = light_encoder.vocab_size
    rows = []
    for _ in range(3000):
        t = np.unique(rng.choice(400, 40))
        w = rng.gamma(1.5, 0.6, len(t)).astype(np.float32) * (1 + (t % 7))  # some terms are heavier
        rows.append((t, w))
    docs = SparseVectors.from_rows(rows, dim)
    settings = BuildSettings(global_postings=2)  # 2 x 30,522 of the ~113k postings
    idx = Index.create(tmp_path / "idx", encoder=light_encoder, approx=settings)
    idx.add_vectors([f"d{i}" for i in range(len(docs))], docs)
    idx.commit()
    meta = idx._segments[0].meta["approx"]
    w = np.asarray(docs.data, np.float32)
    budget = 2 * dim
    thr = np.sort(w)[::-1][budget - 1]
    per_term = np.bincount(np.asarray(docs.indices), weights=(w >= thr).astype(np.float64), minlength=dim)
    assert meta["kept"] == int(np.minimum(per_term, meta["lam_n"]).sum()) < len(w)
    # heavy terms keep more of their list than light ones
    kept = np.diff(idx._segments[0].ax.tblk)
    assert kept[6::7][:50].sum() > kept[0::7][:50].sum()
    idx.close()


def test_a_damaged_array_header_is_a_clear_error(light_encoder, tmp_path):
    """numpy raises tokenize / syntax errors for some damaged .npy headers: opening names the file instead."""
    from spladekit.errors import DataFormatError

    rng = np.random.default_rng(2)
    rows = [(np.unique(rng.choice(400, 30)), rng.random(30).astype(np.float32)) for _ in range(300)]
    docs = SparseVectors.from_rows([(t, w[: len(t)]) for t, w in rows], light_encoder.vocab_size)
    path = tmp_path / "idx"
    idx = Index.create(path, encoder=light_encoder)
    idx.add_vectors([f"d{i}" for i in range(len(docs))], docs)
    idx.commit()
    f = idx._segments[0].folder / "ax_tblk.npy"
    idx.close()
    raw = bytearray(f.read_bytes())
    raw[raw.index(b"}") + 8] = ord("[")  # inside the header's padding: an unclosed bracket
    f.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="ax_tblk.npy"):
        Index.open(path)
