"""``spladekit check`` and ``spladekit snapshot``: verify an embedded index, copy its last commit consistently."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..errors import InputError
from .options import index_option, json_option, output_option

EXIT_DAMAGED = 1


def register(app: typer.Typer) -> None:
    """Add ``check`` and ``snapshot`` to ``app``."""
    app.command("check")(check_cmd)
    app.command("snapshot")(snapshot_cmd)


def _local(index: Path) -> Path:
    if not (index / "manifest.json").is_file():
        if (index / "qdrant.json").is_file():
            raise InputError(f"{index}: check and snapshot work on embedded (local) indexes, not Qdrant")
        raise InputError(f"{index} is not an index folder (no manifest.json)")
    return index


def check_cmd(
    index: Path = index_option(),
    deep: bool = typer.Option(
        False, "--deep", help="Also verify every file's checksum and the structure of every segment."
    ),
    as_json: bool = json_option("Print JSON."),
) -> None:
    """Verify an index: the manifest and file sizes; with --deep every checksum, posting, id and stored record.
    One line per problem, naming the file; exit code 1 when the index is damaged."""
    from ..index.local.integrity import check_index

    rep = check_index(_local(index), deep=deep)
    if as_json:
        keys = ("path", "deep", "ok", "problems", "notes", "files", "bytes")
        typer.echo(json.dumps({k: getattr(rep, k) for k in keys}))
    else:
        for line in rep.problems:
            typer.echo(f"damaged: {line}")
        for line in rep.notes:
            typer.echo(f"note: {line}")
        what = "checksums and structure" if deep else "manifest and file sizes (--deep: checksums, structure)"
        verdict = "ok" if rep.ok else f"{len(rep.problems)} problem(s)"
        typer.echo(f"{index}: {verdict}; checked {what} of {rep.files} file(s), {rep.bytes:,} B read")
    if not rep.ok:
        sys.exit(EXIT_DAMAGED)


def snapshot_cmd(
    index: Path = index_option(),
    output: Path = output_option("New folder for the copy (hard links on the same filesystem)."),
    copy: bool = typer.Option(
        False, "--copy", help="Copy every file instead of hard-linking (a backup that shares no bytes)."
    ),
) -> None:
    """Copy the last commit of an index consistently while it is read and written; open the copy to restore."""
    from ..index.local.snapshot import snapshot

    info = snapshot(_local(index), output, link=not copy)
    how = "linked" if info["linked"] == info["files"] else f"{info['linked']} linked, the rest copied"
    typer.echo(
        f"{output}: snapshot of generation {info['generation']}, {info['documents']:,} documents, "
        f"{info['files']} files ({how})"
    )
