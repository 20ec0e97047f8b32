"""The ``spladekit`` command line: one typer app; each area registers its own commands."""

from __future__ import annotations

import sys

import typer

from ..errors import SpladekitError

app = typer.Typer(
    name="spladekit",
    help="Learned sparse retrieval with SPLADE: encode, index, search, evaluate, train, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import check as _check  # noqa: E402
from . import encode as _encode  # noqa: E402
from . import evaluate as _evaluate  # noqa: E402
from . import export as _export  # noqa: E402
from . import export_model as _export_model  # noqa: E402
from . import index as _index  # noqa: E402
from . import query_side as _query_side  # noqa: E402
from . import serve as _serve  # noqa: E402
from . import train as _train  # noqa: E402
from . import tune as _tune  # noqa: E402

for _mod in (_encode, _index, _evaluate, _train, _serve, _export, _export_model, _query_side, _check, _tune):
    _mod.register(app)


def main() -> None:
    """Entry point: user errors print one line and exit 2; a failing disk or file system (full, read-only, an
    I/O error) prints the OS error, the file it hit and what became of the index, and exits 1. Never a traceback."""
    try:
        app()
    except SpladekitError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as e:
        typer.secho(f"error: {os_error_line(e)}", fg=typer.colors.RED, err=True)
        sys.exit(1)


def os_error_line(e: OSError) -> str:
    """``[Errno 28] No space left on device: 'index/seg_3/terms.npy' (committing to the index …: … intact)``."""
    notes = "; ".join(getattr(e, "__notes__", []))
    return f"{e} ({notes})" if notes else str(e)
