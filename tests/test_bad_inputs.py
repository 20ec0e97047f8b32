"""Bad input everywhere outside HTTP (issue 16, item 5): the CLI and the Python API on missing and broken model
folders, malformed JSONL and qrels, duplicate ids, non-JSON metadata, binary and empty files, a 5 MB text.

Each case must give one clear line naming the file / line / problem (never a traceback), write nothing half
(no index folder left by a failed create, an existing index unchanged). The table of (input -> message) is
printed at the end: ``pytest tests/test_bad_inputs.py -s``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.errors import SpladekitError
from spladekit.index import Index

runner = CliRunner()
TABLE: list[tuple[str, str]] = []


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if TABLE:
        width = max(len(a) for a, _ in TABLE)
        print("\n\nbad input -> message")
        for what, msg in TABLE:
            print(f"{what.ljust(width)} -> {msg}")


def _one_line(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


def cli(what: str, args: list[str], *, want: int = 2, expect: str | tuple = ()) -> str:
    """Run the CLI as ``spladekit.cli.main`` does (a SpladekitError is 'error: …', exit 2); check the exit code,
    that the message is one line mentioning every ``expect`` string, and record it in the table."""
    r = runner.invoke(app, args)
    exc = r.exception
    if isinstance(exc, SpladekitError):
        code, msg = 2, f"error: {exc}"
        assert "\n" not in str(exc), str(exc)
    elif exc is not None and not isinstance(exc, SystemExit):
        raise AssertionError(f"{what}: unexpected {type(exc).__name__}: {exc}\n{r.output}") from exc
    else:
        code = r.exit_code
        # the lines about the problem (the skip list, a note), without progress bars and the summary
        lines = [ln.strip() for ln in r.output.replace("\r", "\n").splitlines() if ln.strip()]
        keep = [ln for ln in lines if "%|" not in ln and " added, " not in ln]
        msg = " | ".join(keep) or (lines[-1] if lines else "")
    _one_line(r.output + msg)
    assert code == want, f"{what}: exit {code}, wanted {want}: {r.output}{msg}"
    for e in (expect,) if isinstance(expect, str) else expect:
        assert e in msg, f"{what}: {e!r} not in {msg!r}"
    TABLE.append((what, _short(msg)))
    return msg


def _short(msg: str) -> str:
    """The message with pytest's temporary folders cut off the paths."""
    return re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/]+/", "", msg)


def api(what: str, fn, *, expect: str | tuple = (), exc_type=SpladekitError) -> str:
    """Call ``fn``; it must raise ``exc_type`` with a one-line message mentioning every ``expect`` string."""
    with pytest.raises(exc_type) as info:
        fn()
    msg = f"{type(info.value).__name__}: {info.value}"
    assert "\n" not in str(info.value), msg
    _one_line(msg)
    for e in (expect,) if isinstance(expect, str) else expect:
        assert e in msg, f"{what}: {e!r} not in {msg!r}"
    TABLE.append((what, _short(msg)))
    return msg


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def good_docs(tmp_path_factory) -> Path:
    return _write(
        tmp_path_factory.mktemp("src") / "docs.jsonl",
        "".join(json.dumps({"_id": f"g{i}", "text": f"good document number {i}"}) + "\n" for i in range(3)),
    )


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> dict[str, Path]:
    from spladekit.encode import bundled_model_path

    base = tmp_path_factory.mktemp("models")
    src = Path(bundled_model_path())
    garbage = base / "garbage-config"
    shutil.copytree(src, garbage)
    (garbage / "config.json").write_text("{not json at all")
    truncated = base / "truncated-weights"
    shutil.copytree(src, truncated)
    w = truncated / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    empty = base / "empty-folder"
    empty.mkdir()
    return {"missing": base / "no-such-model", "garbage": garbage, "truncated": truncated, "empty": empty}


# --- models -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "empty"])
def test_bad_model_folder_cli_leaves_no_index(kind, bad_models, good_docs, tmp_path):
    ix = tmp_path / "ix"
    cli(
        f"index -m <{kind} model folder>",
        ["index", str(good_docs), "-i", str(ix), "-m", str(bad_models[kind])],
    )
    assert not ix.exists(), f"a failed create left {sorted(p.name for p in ix.iterdir())}"


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated"])
def test_bad_model_folder_api(kind, bad_models, tmp_path):
    from spladekit import SpladeEncoder

    path = str(bad_models[kind])
    api(f"SpladeEncoder.load(<{kind} model>)", lambda: SpladeEncoder.load(path), expect=Path(path).name)
    ix = tmp_path / "ix"
    api(f"Index.create(encoder=<{kind} model>)", lambda: Index.create(ix, encoder=path))
    assert not ix.exists()


def test_search_missing_index_and_model(tmp_path):
    cli("search -i <missing index>", ["search", "q", "-i", str(tmp_path / "nope")], expect="nope")
    api("Index.open(<missing folder>)", lambda: Index.open(tmp_path / "nope"), expect="nope")


# --- records ------------------------------------------------------------------------------------------------

BAD_LINES = {
    "bad JSON": '{"_id": "x1", "text": "unterminated',
    "missing id": '{"text": "no id here"}',
    "non-string text": '{"_id": "x3", "text": 42}',
    "JSON array line": "[1, 2, 3]",
}


@pytest.mark.parametrize("problem", list(BAD_LINES))
def test_malformed_jsonl_line(problem, tmp_path, encoder):
    good = json.dumps({"_id": "ok1", "text": "a fine document about yeast"})
    src = _write(tmp_path / "recs.jsonl", f"{good}\n{BAD_LINES[problem]}\n")
    ix = tmp_path / "ix"
    # --strict: one error naming recs.jsonl:2, before any model loads; no index folder
    cli(
        f"index --strict, JSONL {problem}",
        ["index", str(src), "-i", str(ix), "--strict"],
        expect="recs.jsonl:2",
    )
    assert not ix.exists()
    # default: the good record is indexed, the bad one listed with file:line, exit 3
    cli(f"index, JSONL {problem}", ["index", str(src), "-i", str(ix)], want=3, expect="recs.jsonl:2")
    with Index.open(ix, encoder=encoder) as idx:
        assert idx.ids() == ["ok1"] or sorted(idx.ids()) == ["ok1"]
    from spladekit.data import read_records

    api(f"read_records, {problem}", lambda: list(read_records(src)), expect="recs.jsonl:2")


def test_strict_failure_leaves_existing_index_unchanged(tmp_path, good_docs, encoder):
    ix = tmp_path / "ix"
    assert runner.invoke(app, ["index", str(good_docs), "-i", str(ix)]).exit_code == 0
    before = {p.relative_to(ix): p.read_bytes() for p in ix.rglob("*") if p.is_file() and p.suffix != ".lock"}
    bad = _write(tmp_path / "more.jsonl", '{"_id": "n1", "text": "new"}\n{"_id": 5\n')
    cli("index --strict <bad JSONL> into an existing index", ["index", str(bad), "-i", str(ix), "--strict"])
    after = {p.relative_to(ix): p.read_bytes() for p in ix.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert after == before
    cli(
        "index -m <other model> into an existing index", ["index", str(bad), "-i", str(ix), "-m", "/no/model"]
    )
    assert {
        p.relative_to(ix): p.read_bytes() for p in ix.rglob("*") if p.is_file() and p.suffix != ".lock"
    } == before


def test_duplicate_ids_and_bad_metadata_api(tmp_path, encoder, light_encoder):
    ix = tmp_path / "ix"
    with Index.create(ix, encoder=encoder) as idx:
        idx.add(["a"], ["the first document"])
        idx.commit()
    with Index.open(ix, encoder=encoder) as idx:
        api("Index.add, duplicate ids in one batch", lambda: idx.add(["b", "b"], ["x", "y"]), expect="b")
        api(
            "Index.add, metadata with a set",
            lambda: idx.add(["c"], ["x"], metadata=[{"tags": {1, 2}}]),
            expect=("metadata",),
        )
        api(
            "Index.add, metadata with NaN",
            lambda: idx.add(["d"], ["x"], metadata=[{"score": math.nan}]),
            expect=("metadata",),
        )
        api("Index.add, non-string text", lambda: idx.add(["e"], [b"bytes"]))
        api("Index.add, ids/texts lengths differ", lambda: idx.add(["f", "g"], ["one"]))
        idx.commit()
    with Index.open(ix, encoder=encoder) as idx:
        assert idx.ids() == ["a"], idx.ids()


def test_duplicate_ids_in_one_jsonl(tmp_path):
    src = _write(
        tmp_path / "dups.jsonl",
        json.dumps({"_id": "same", "text": "one"}) + "\n" + json.dumps({"_id": "same", "text": "two"}) + "\n",
    )
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "-i", str(ix)])
    assert r.exit_code in (0, 2, 3), r.output
    if r.exit_code == 0:
        TABLE.append(("index, duplicate id in one JSONL", "accepted (last record wins): " + r.output.strip()))
    else:
        cli(
            "index, duplicate id in one JSONL",
            ["index", str(src), "-i", str(ix)],
            want=r.exit_code,
            expect="same",
        )


# --- folders ------------------------------------------------------------------------------------------------


def test_binary_and_empty_files_in_a_folder(tmp_path, encoder):
    src = tmp_path / "docs"
    _write(src / "good.txt", "Yeast ferments sugar into alcohol.")
    _write(src / "blob.txt", bytes(range(256)) * 20)
    _write(src / "latin1.md", "caf\xe9 cr\xe8me".encode("latin-1"))
    _write(src / "empty.txt", "")
    ix = tmp_path / "ix"
    msg = cli(
        "index <folder: binary, non-UTF-8, empty files>",
        ["index", str(src), "-i", str(ix)],
        want=3,
        expect=("blob.txt", "latin1.md", "empty.txt"),
    )
    assert "good.txt" not in msg.split("skipped", 1)[-1]
    with Index.open(ix, encoder=encoder) as idx:
        assert idx.ids() == ["good.txt"]


def test_empty_sources(tmp_path):
    empty_jsonl = _write(tmp_path / "empty.jsonl", "")
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(empty_jsonl), "-i", str(ix)])
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, (SystemExit, SpladekitError)), (
        r.output
    )
    cli("index <empty .jsonl>", ["index", str(empty_jsonl), "-i", str(tmp_path / "ix2")], want=_code(r))
    (tmp_path / "emptydir").mkdir()
    r = runner.invoke(app, ["index", str(tmp_path / "emptydir"), "-i", str(tmp_path / "ix3")])
    cli(
        "index <empty folder>",
        ["index", str(tmp_path / "emptydir"), "-i", str(tmp_path / "ix4")],
        want=_code(r),
    )
    cli(
        "index <missing source>",
        ["index", str(tmp_path / "nope"), "-i", str(tmp_path / "ix5")],
        expect="nope",
    )
    assert not (tmp_path / "ix5").exists()


def _code(r) -> int:
    return 2 if isinstance(r.exception, SpladekitError) else r.exit_code


@pytest.mark.slow
def test_five_megabyte_text_is_indexed_whole_with_a_note(tmp_path, encoder):
    src = tmp_path / "docs"
    _write(src / "huge.txt", ("fermentation of sugar by yeast " * 175_000)[: 5 * 1024 * 1024])
    ix = tmp_path / "ix"
    cli("index <one 5 MB text>", ["index", str(src), "-i", str(ix)], want=0, expect="longer than one window")
    with Index.open(ix, encoder=encoder) as idx:
        assert [h.id for h in idx.search("yeast fermentation", k=1)] == ["huge.txt"]


# --- eval -----------------------------------------------------------------------------------------------------


def _beir(root: Path, qrels: str) -> Path:
    _write(
        root / "corpus.jsonl",
        "".join(json.dumps({"_id": f"c{i}", "text": f"doc {i}"}) + "\n" for i in range(3)),
    )
    _write(root / "queries.jsonl", json.dumps({"_id": "q1", "text": "doc"}) + "\n")
    _write(root / "qrels" / "test.tsv", qrels)
    return root


QRELS = [
    pytest.param(
        "qrels score not a number",
        "query-id\tcorpus-id\tscore\nq1\tc0\thigh\n",
        id="qrels score not a number",
    ),
    pytest.param("qrels too few columns", "query-id\tcorpus-id\tscore\nq1\tc0\n", id="qrels too few columns"),
    pytest.param(
        "qrels unknown doc id", "query-id\tcorpus-id\tscore\nq1\tzz9\t1\n", id="qrels unknown doc id"
    ),
    pytest.param("qrels binary garbage", b"\x00\xff\xfe\x01garbage\n", id="qrels binary garbage"),
    pytest.param("qrels empty file", "", id="qrels empty file"),
]


@pytest.mark.parametrize(("problem", "content"), QRELS)
def test_malformed_qrels_eval(problem, content, tmp_path):
    root = _beir(tmp_path / "beir", "")
    _write(root / "qrels" / "test.tsv", content)
    out = tmp_path / "out"
    cli(f"eval, {problem}", ["eval", str(root), "--no-bm25", "--output", str(out)], expect="test.tsv")
    assert not out.exists() or not any(out.iterdir())


# --- a real process -------------------------------------------------------------------------------------------


def _spladekit(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "spladekit"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from spladekit.cli import main; main()"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
def test_real_process_one_line_and_exit_code(tmp_path, bad_models):
    src = _write(tmp_path / "recs.jsonl", '{"_id": "a", "text": "fine"}\n{"_id": "b", "text": 7}\n')
    for what, args, name in [
        (
            "process: index --strict, non-string text",
            ["index", str(src), "-i", str(tmp_path / "i1"), "--strict"],
            "recs.jsonl:2",
        ),
        (
            "process: index -m <garbage config.json>",
            ["index", str(src), "-i", str(tmp_path / "i2"), "-m", str(bad_models["garbage"])],
            "garbage-config",
        ),
    ]:
        p = _spladekit(*args)
        assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], p.stderr
        _one_line(p.stdout + p.stderr)
        TABLE.append((what, _short(f"exit {p.returncode}: {lines[0]}")))
