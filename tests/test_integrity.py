"""Integrity of the embedded index: checksums recorded by every commit, cheap verification on open, ``check``
(deep), random single-byte damage, and consistent snapshots taken while a writer commits."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.errors import DataFormatError, SpladekitError
from spladekit.index import Index
from spladekit.index.local.integrity import check_index
from spladekit.sparse import SparseVectors

DIM = 30522
N = 300
runner = CliRunner()


def _vectors(rng, n: int, terms: int = 12) -> SparseVectors:
    rows = []
    for _ in range(n):
        idx = np.sort(rng.choice(np.arange(2000, 2300), size=terms, replace=False))
        rows.append((idx, rng.gamma(1.0, 1.0, size=terms).astype(np.float32)))
    return SparseVectors.from_rows(rows, DIM)


def _build(path, n: int = N, seed: int = 0) -> None:
    """Two commits, a delete (a tombstone file), texts and metadata."""
    rng = np.random.default_rng(seed)
    v = _vectors(rng, n)
    ids = [f"doc-{i}" for i in range(n)]
    texts = [f"text number {i} " + "word " * int(rng.integers(1, 20)) for i in range(n)]
    meta = [{"lang": ["en", "fr", "de"][i % 3], "year": 2000 + i % 7} for i in range(n)]
    h = n * 2 // 3
    with Index.create(path) as idx:
        idx.add_vectors(ids[:h], v[np.arange(h)], texts[:h], meta[:h])
        idx.commit()
        idx.add_vectors(ids[h:], v[np.arange(h, n)], texts[h:], meta[h:])
        idx.delete(["doc-3", "doc-10"])
        idx.commit()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("integrity") / "idx"
    _build(path)
    return path


def _copy(built, tmp_path):
    dst = tmp_path / "idx"
    shutil.copytree(built, dst)
    return dst


def _strip_checksums(path) -> None:
    """Make the index look like one written before checksums."""
    m = json.loads((path / "manifest.json").read_text())
    for k in ("checksum", "vocab_sum"):
        m.pop(k, None)
    for e in m["segments"]:
        e.pop("files", None)
        e.pop("deleted_sum", None)
    (path / "manifest.json").write_text(json.dumps(m, indent=1))


def test_every_file_has_a_recorded_checksum(built):
    m = json.loads((built / "manifest.json").read_text())
    assert m["checksum"] and m["vocab_sum"][0] == (built / "vocab.txt").stat().st_size
    for e in m["segments"]:
        on_disk = {p.name for p in (built / e["name"]).iterdir()}
        assert set(e["files"]) | ({e["deleted"]} if e["deleted"] else set()) == on_disk
        for name, (size, crc) in e["files"].items():
            assert (built / e["name"] / name).stat().st_size == size and len(crc) == 8
    assert any(e.get("deleted_sum") for e in m["segments"])
    rep = check_index(built, deep=True)
    assert rep.ok and not rep.notes, rep.problems + rep.notes
    assert rep.files == sum(len(e["files"]) + bool(e["deleted"]) for e in m["segments"]) + 1


def test_missing_or_truncated_file_is_a_clear_error_on_open(built, tmp_path):
    path = _copy(built, tmp_path)
    seg = path / "seg_000001"
    with open(seg / "weights.npy", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataFormatError, match=r"seg_000001/weights\.npy: size 100 bytes"):
        Index.open(path)
    (seg / "weights.npy").unlink()
    with pytest.raises(DataFormatError, match=r"weights\.npy: missing file named by the manifest"):
        Index.open(path)
    rep = check_index(path)
    assert not rep.ok and any("weights.npy" in p for p in rep.problems)


def test_damaged_manifest_is_refused_on_open(built, tmp_path):
    path = _copy(built, tmp_path)
    raw = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(raw.replace('"n_deleted": 2', '"n_deleted": 1'))
    with pytest.raises(DataFormatError, match="damaged manifest"):
        Index.open(path)
    assert any("manifest.json" in p for p in check_index(path).problems)


def test_old_index_without_checksums_opens_and_check_says_not_recorded(built, tmp_path):
    path = _copy(built, tmp_path)
    _strip_checksums(path)
    with Index.open(path) as idx:
        assert len(idx) == N - 2
        rep = idx.check(deep=True)
        assert rep.ok, rep.problems
        assert any("not recorded" in n for n in rep.notes)
        idx.add_vectors(["new"], _vectors(np.random.default_rng(1), 1), ["new text"])
        idx.delete(["doc-20"])
        idx.commit(merge=False)
    rep = check_index(path, deep=True)  # the new segment and tombstone carry sums, the old files do not
    assert rep.ok and any("segment checksums not recorded" in n for n in rep.notes), rep.problems


def test_deep_check_finds_structural_damage_without_checksums(built, tmp_path):
    path = _copy(built, tmp_path)
    _strip_checksums(path)
    seg = path / "seg_000001"
    blob = bytearray((seg / "store.bin").read_bytes())
    blob[0] = ord("{")  # a record that is no longer [text, metadata] JSON
    (seg / "store.bin").write_bytes(bytes(blob))
    docs = np.load(seg / "docs.npy")
    docs[:2] = docs[1::-1].copy() if docs[0] != docs[1] else docs[:2]  # two offsets out of order
    np.save(seg / "docs.npy", docs)
    ids = bytearray((path / "seg_000002" / "ids.bin").read_bytes())
    ids[:5] = b"doc-1"  # the first id of the second segment now duplicates a live one ("doc-1...")
    (path / "seg_000002" / "ids.bin").write_bytes(bytes(ids))
    rep = check_index(path, deep=True)
    text = "\n".join(rep.problems)
    assert "store.bin: document 0" in text
    assert "docs.npy" in text
    assert not check_index(path).problems  # the cheap check cannot know without checksums


def test_cli_check_and_snapshot(built, tmp_path):
    path = _copy(built, tmp_path)
    r = runner.invoke(app, ["check", "-i", str(path), "--deep"])
    assert r.exit_code == 0 and "ok" in r.output, r.output
    r = runner.invoke(app, ["snapshot", "-i", str(path), "-o", str(tmp_path / "snap")])
    assert r.exit_code == 0 and "generation 2" in r.output and "(linked)" in r.output, r.output
    r = runner.invoke(app, ["snapshot", "-i", str(path), "-o", str(tmp_path / "copy"), "--copy"])
    assert r.exit_code == 0 and "0 linked" in r.output, r.output
    with open(path / "seg_000002" / "store.bin", "r+b") as f:
        f.seek(5)
        b = f.read(1)
        f.seek(5)
        f.write(bytes([b[0] ^ 0x40]))
    r = runner.invoke(app, ["check", "-i", str(path)])
    assert r.exit_code == 0, r.output  # sizes are right: only --deep reads the bytes
    r = runner.invoke(app, ["check", "-i", str(path), "--deep"])
    assert r.exit_code == 1 and "seg_000002/store.bin: checksum mismatch" in r.output, r.output
    r = runner.invoke(app, ["check", "-i", str(tmp_path / "copy"), "--deep", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ok"], r.output  # a copy shares no bytes
    r = runner.invoke(app, ["check", "-i", str(tmp_path / "snap"), "--deep"])
    assert r.exit_code == 1, r.output  # hard links share the damaged bytes
    r = runner.invoke(app, ["snapshot", "-i", str(path), "-o", str(tmp_path / "snap")])
    assert isinstance(r.exception, SpladekitError) and "not empty" in str(r.exception)  # main() exits 2


# ---------------------------------------------------------------------- random damage
def _queries(vocab) -> list:
    rng = np.random.default_rng(5)
    out = []
    for i in range(6):
        terms = rng.choice(np.arange(2000, 2300), size=4, replace=False)
        q = {vocab[t]: float(rng.uniform(0.5, 2.0)) for t in terms}
        out.append((q, {"lang": "fr"} if i % 2 else None))
    return out


def _observe(path, queries) -> list:
    """What a reader sees: top-10 hits with texts and metadata for each query, and a few documents by id."""
    with Index.open(path) as idx:
        out = []
        for q, flt in queries:
            hits = idx.search(q, k=10, filter=flt, with_text=True)
            out.append([(h.id, round(float(h.score), 4), h.text, h.metadata) for h in hits])
        out.append([idx.get(x) for x in ("doc-0", "doc-150", "doc-299")])
        out.append(len(idx))
    return out


def _reader_outcome(path, queries, expected) -> str:
    try:
        got = _observe(path, queries)
    except SpladekitError:
        return "refused"
    except Exception:  # noqa: BLE001 - an error that is not a clear one
        return "unclear-error"
    return "clean" if got == expected else "wrong"


@pytest.mark.slow
def test_random_byte_flips_are_detected_or_harmless(built, tmp_path):
    path = _copy(built, tmp_path)
    # every file but write.lock (it holds a pid, nothing reads it)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "write.lock")
    with Index.open(path) as idx:
        queries = _queries(idx.vocab)
    expected = _observe(path, queries)
    rng = np.random.default_rng(16)
    counts = {"detected": 0, "clean": 0, "refused": 0, "wrong": 0, "unclear-error": 0, "crashed": 0}
    undetected = []
    ctx = multiprocessing.get_context("fork")  # a reader that crashes outright must not take the test with it
    pool = ProcessPoolExecutor(1, mp_context=ctx)
    t0 = time.perf_counter()
    try:
        for _ in range(200):
            f = files[int(rng.integers(len(files)))]
            data = bytearray(f.read_bytes())
            at = int(rng.integers(len(data)))
            old = data[at]
            data[at] = old ^ int(rng.integers(1, 256))
            f.write_bytes(bytes(data))
            try:
                rep = check_index(path, deep=True)
                if rep.ok:
                    undetected.append((f.relative_to(path), at))
                else:
                    counts["detected"] += 1
                try:
                    outcome = pool.submit(_reader_outcome, path, queries, expected).result(timeout=60)
                except BrokenProcessPool:
                    outcome = "crashed"
                    pool = ProcessPoolExecutor(1, mp_context=ctx)
                counts[outcome] += 1
            finally:
                data[at] = old
                f.write_bytes(bytes(data))
    finally:
        pool.shutdown()
    print(f"\nbyte flips in {len(files)} files, 200 runs, {time.perf_counter() - t0:.1f} s: {counts}")
    assert counts["detected"] == 200, undetected  # CRC-32 catches every single damaged byte
    assert counts["unclear-error"] == counts["crashed"] == 0  # a reader refuses with a DataFormatError
    assert check_index(path, deep=True).ok and _observe(path, queries) == expected


# ---------------------------------------------------------------------- snapshots
@pytest.mark.slow
def test_snapshot_while_a_writer_commits(tmp_path):
    path = tmp_path / "live"
    rng = np.random.default_rng(9)
    v = _vectors(rng, 400)
    states: list[frozenset] = []
    with Index.create(path) as idx:
        idx.add_vectors([f"w{i}" for i in range(20)], v[np.arange(20)], ["t"] * 20, [{"b": 0}] * 20)
        idx.commit()
        states.append(frozenset(idx.ids()))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            with Index.open(path) as w:
                for b in range(1, 19):
                    rows = np.arange(20 * b, 20 * b + 20)
                    w.add_vectors([f"w{i}" for i in rows], v[rows], ["t"] * 20, [{"b": b}] * 20)
                    w.delete([f"w{20 * (b - 1) + 3}"])
                    w.commit()  # merges every few commits: segment folders come and go
                    states.append(frozenset(w.ids()))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            stop.set()

    th = threading.Thread(target=writer)
    th.start()
    snaps = []
    reader = Index.open(path)
    while not stop.is_set() or not snaps:
        out = tmp_path / f"snap{len(snaps)}"
        info = reader.snapshot(out)
        reader.refresh()
        snaps.append((out, info))
    th.join()
    reader.close()
    assert not errors, errors
    assert len(snaps) >= 2
    for out, info in snaps:
        with Index.open(out) as s:
            assert frozenset(s.ids()) in states, (out, info)
            assert len(s) == info["documents"]
            rep = s.check(deep=True)
            assert rep.ok and not rep.notes, rep.problems + rep.notes
        assert not (out / "write.lock").exists()
    restored = snaps[-1][0]
    with Index.open(restored) as s:  # a restored copy is an ordinary index: it takes writes
        s.delete([next(iter(s.ids()))])
        s.commit()
        assert s.check(deep=True).ok


@pytest.mark.parametrize("compact", [False, True])
def test_deep_check_accepts_byte_gap_containers_compact_and_negative_weights(tmp_path, compact):
    rng = np.random.default_rng(2)
    n = 1500
    rows = []
    for i in range(n):
        t = np.sort(rng.choice(np.arange(2001, 2100), size=6, replace=False))
        w = rng.gamma(1.0, 1.0, size=6).astype(np.float32)
        if not compact and i % 5 == 0:
            w[0] = -w[0]  # negative weights: win_min.npy
        rows.append((np.r_[2000, t] if i % 3 else t, np.r_[np.float32(0.5 + i % 7), w] if i % 3 else w))
    v = SparseVectors.from_rows(rows, DIM)
    with Index.create(tmp_path / "i", compact=compact) as idx:
        idx.add_vectors([f"x{i}" for i in range(n)], v)
        idx.commit()
        rep = idx.check(deep=True)
        assert rep.ok and not rep.notes, rep.problems
    seg = tmp_path / "i" / "seg_000001"
    assert (seg / "win_min.npy").exists() != compact
    docs = np.load(seg / "docs.npy")
    tp = np.load(seg / "term_ptr.npy")
    assert tp[1, 2001] - tp[1, 2000] < n * 2 // 3  # term 2000 (1,000 documents) is a byte-gap list
    a = int(tp[1, 2000]) + 1 + 2 * 16 + 10  # a gap byte past the header and the 16-entry skip table
    docs.view(np.uint8)[2 * a] ^= 0x11
    np.save(seg / "docs.npy", docs)
    _strip_checksums(tmp_path / "i")
    assert any("docs.npy" in p for p in check_index(tmp_path / "i", deep=True).problems)
