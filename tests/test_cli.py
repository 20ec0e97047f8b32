"""The command line as a new user meets it: sync with a source folder, bad files skipped, failed creates leave
nothing, one option vocabulary across commands, input checked before any model loads."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.cli.options import EXIT_SKIPPED
from spladekit.errors import SpladekitError

runner = CliRunner()


def _docs(folder, files: dict[str, str | bytes]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    return folder


def _search_ids(ix, query: str, *extra: str) -> list[str]:
    r = runner.invoke(app, ["search", query, "-i", str(ix), "--json", *extra])
    assert r.exit_code == 0, r.output
    return [h["id"] for h in json.loads(r.output)]


def test_reindex_removes_deleted_source_files_and_delete_command(tmp_path):
    src = _docs(
        tmp_path / "docs",
        {
            "zebra.txt": "Zebras are striped horses of the African savanna.",
            "cat.txt": "The cat sat on the mat and purred.",
            "soup.md": "A recipe for tomato soup with basil.",
        },
    )
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "-i", str(ix)])
    assert r.exit_code == 0, r.output
    assert "zebra.txt" in _search_ids(ix, "striped zebra")
    (src / "zebra.txt").unlink()
    r = runner.invoke(app, ["index", str(src), "-i", str(ix)])
    assert r.exit_code == 0, r.output
    assert "0 added, 0 updated, 2 unchanged, 1 removed; 2 documents" in r.output
    assert "zebra.txt" not in _search_ids(ix, "striped zebra", "-k", "5")
    # --keep-missing opts out
    (src / "cat.txt").unlink()
    r = runner.invoke(app, ["index", str(src), "-i", str(ix), "--keep-missing"])
    assert r.exit_code == 0 and "0 removed; 2 documents" in r.output and "kept 1" in r.output, r.output
    # info: bytes per posting counts the posting files only, not the fixed costs (vocabulary, per-term tables)
    r = runner.invoke(app, ["info", "-i", str(ix), "--json"])
    info = json.loads(r.output)
    assert info["bytes_per_posting"] * info["postings"] + info["bytes_other"] == pytest.approx(
        info["bytes_on_disk"]
    )
    assert info["bytes_per_posting"] < 0.1 * info["bytes_on_disk"] / info["postings"]
    # spladekit delete
    r = runner.invoke(app, ["delete", "cat.txt", "-i", str(ix)])
    assert r.exit_code == 0 and "deleted 1" in r.output, r.output
    assert _search_ids(ix, "cat on the mat") == ["soup.md"]
    r = runner.invoke(app, ["delete", "nope.txt", "-i", str(ix)])
    assert isinstance(r.exception, SpladekitError) and "unknown id" in str(r.exception)
    r = runner.invoke(app, ["delete", "nope.txt", "-i", str(ix), "--missing-ok"])
    assert r.exit_code == 0 and "deleted 0" in r.output


def test_bad_files_are_skipped_and_reported(tmp_path):
    src = _docs(
        tmp_path / "docs",
        {
            "good.txt": "Photosynthesis turns light into chemical energy.",
            "x.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
            "latin1.md": "caf\xe9".encode("latin-1"),
            "empty.txt": "   \n",
        },
    )
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "-i", str(ix)])
    assert r.exit_code == EXIT_SKIPPED, r.output
    assert "1 added" in r.output and "skipped 3 item(s)" in r.output
    assert "x.txt: binary file" in r.output and "latin1.md: not UTF-8" in r.output
    assert "empty.txt: empty file" in r.output
    assert _search_ids(ix, "photosynthesis light") == ["good.txt"]
    # the unreadable files are still in the source: a re-run removes nothing for them
    r = runner.invoke(app, ["index", str(src), "-i", str(ix)])
    assert r.exit_code == EXIT_SKIPPED and "1 unchanged, 0 removed" in r.output, r.output


def test_malformed_jsonl_records_skipped_and_nothing_removed(tmp_path):
    jl = tmp_path / "c.jsonl"
    jl.write_text(
        "\n".join(
            [
                json.dumps({"_id": "a", "text": "alpha particles"}),
                "{not json",
                json.dumps({"_id": "b", "text": 7}),
                json.dumps({"_id": "c", "text": "gamma rays"}),
            ]
        )
    )
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(jl), "-i", str(ix)])
    assert r.exit_code == EXIT_SKIPPED, r.output
    assert f"{jl}:2: invalid JSON" in r.output and f"{jl}:3:" in r.output
    assert "2 added" in r.output
    # drop "c" from the source while line 2 is still unreadable: its id is unknown, so nothing is deleted
    jl.write_text("\n".join([json.dumps({"_id": "a", "text": "alpha particles"}), "{not json"]))
    r = runner.invoke(app, ["index", str(jl), "-i", str(ix)])
    assert "0 removed; 2 documents" in r.output and "none was removed" in r.output, r.output


def test_strict_and_failed_create_leave_nothing(tmp_path):
    src = _docs(tmp_path / "docs", {"good.txt": "fine text", "x.txt": b"\x00\x01\x02binary"})
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "-i", str(ix), "--strict"])
    assert isinstance(r.exception, SpladekitError) and "x.txt: binary file" in str(r.exception)
    assert not ix.exists()
    # a create that fails after the folder was made (here: an unusable model) leaves no folder either
    r = runner.invoke(app, ["index", str(src), "-i", str(ix), "-m", str(tmp_path / "no-model")])
    assert isinstance(r.exception, SpladekitError) and not ix.exists()
    # an empty folder the user made stays, and stays empty
    ix.mkdir()
    r = runner.invoke(app, ["index", str(src), "-i", str(ix), "-m", str(tmp_path / "no-model")])
    assert ix.is_dir() and not any(ix.iterdir())


def test_inputs_checked_before_anything_loads(tmp_path):
    missing = tmp_path / "missing"
    for args, message in [
        (["search", "q", "-i", str(missing), "--filter", "type==md"], "use a single '='"),
        (["search", "q", "-i", str(missing), "--filter", "novalue"], "expects key=value"),
        (["search", "q", "-i", str(missing), "--approx", "0"], "(0, 1]"),
        (["search", "q", "-i", str(missing), "--approx", "1.5"], "recall target in (0, 1] such as 0.95"),
        (["eval", str(missing), "--approx", "1.5"], "recall target in (0, 1] such as 0.95"),
        (["search", "q", "-i", str(missing)], "no index here"),
        (["index", str(missing), "-i", str(tmp_path / "x")], "no such file or folder"),
    ]:
        r = runner.invoke(app, args)
        assert isinstance(r.exception, SpladekitError), (args, r.output)
        assert message in str(r.exception), (args, str(r.exception))
    r = runner.invoke(app, ["search", "--help"])
    assert "recall@k target in (0, 1]" in " ".join(r.output.split())  # the one rule, the one wording


def test_encode_reads_a_folder_and_search_model_check(tmp_path, tiny_mlm):
    src = _docs(tmp_path / "docs", {"a.txt": "alpha", "b.md": "beta gamma"})
    out = tmp_path / "v.jsonl"
    r = runner.invoke(app, ["encode", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(json.loads(x)["_id"] for x in out.read_text().splitlines()) == ["a.txt", "b.md"]
    ix = tmp_path / "ix"
    assert runner.invoke(app, ["index", str(src), "-i", str(ix)]).exit_code == 0
    assert _search_ids(ix, "alpha", "-m", "splade-tiny")[0] == "a.txt"
    r = runner.invoke(app, ["search", "alpha", "-i", str(ix), "-m", str(tiny_mlm)])
    assert isinstance(r.exception, SpladekitError) and "model mismatch" in str(r.exception)
    r = runner.invoke(app, ["encode", str(src), "-o", str(out), "--address", "auto"])
    assert isinstance(r.exception, SpladekitError) and "--address needs --ray" in str(r.exception)


# One spelling per concept across every command (issue: -f was --filter in one command, --format in another).
CANONICAL_SHORT = {
    "--index": "-i",
    "--k": "-k",
    "--output": "-o",
    "--model": "-m",
    "--batch-size": "-b",
    "--filter": None,
    "--format": None,
    "--json": None,
}
RETIRED = {"--top-k", "--output-dir", "--index-dir", "--topk"}


def _commands():
    return typer.main.get_command(app).commands


def test_every_command_speaks_one_option_vocabulary():
    shorts: dict[str, set[str]] = {}
    cmds = _commands()
    assert {"index", "search", "info", "delete", "serve", "inspect", "encode", "eval", "export"} <= set(cmds)
    for name, cmd in cmds.items():
        for p in cmd.params:
            if p.param_type_name == "argument":
                assert p.name not in ("index", "index_dir"), f"{name}: the index is the -i/--index option"
                continue
            longs = [o for o in p.opts if o.startswith("--")]
            short = [o for o in p.opts if not o.startswith("--")]
            for lo in longs:
                assert lo not in RETIRED, f"{name}: {lo} is retired"
                if lo in CANONICAL_SHORT:
                    want = CANONICAL_SHORT[lo]
                    assert short == ([want] if want else []), (
                        f"{name}: {lo} must have short {want}, has {short}"
                    )
            for s in short:
                shorts.setdefault(s, set()).update(longs)
    clashes = {s: ls for s, ls in shorts.items() if len(ls) > 1}
    assert not clashes, f"one short flag, several meanings: {clashes}"


def test_help_renders_for_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "<bool>" not in r.output
    for name in _commands():
        r = runner.invoke(app, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)
        assert "<bool>" not in r.output and "<str>" not in r.output, (
            f"{name} --help renders type tags (typer?)"
        )


@pytest.mark.parametrize("args", [["search", "--help"], ["inspect", "--help"]])
def test_help_does_not_import_torch(args):
    import subprocess
    import sys

    code = (
        f"import sys; from spladekit.cli import main; sys.argv = ['spladekit', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr
