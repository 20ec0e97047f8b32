"""The CLI's shared vocabulary: one definition per option that several commands take, so every command spells
it the same way (``-i/--index``, ``-k/--k``, ``-o/--output``, ``-m/--model``, ``--filter``, ``--json``)."""

from __future__ import annotations

import typer

# Exit code of a run that finished but skipped bad items (2 is a user error that stopped the run).
EXIT_SKIPPED = 3


def index_option(help: str = "Index folder.", required: bool = True):
    return typer.Option(... if required else None, "--index", "-i", help=help)


def k_option(default: int = 10, help: str = "Number of results."):
    return typer.Option(default, "--k", "-k", help=help, min=1)


def output_option(help: str, required: bool = True):
    return typer.Option(... if required else None, "--output", "-o", help=help)


def model_option(help: str = "Model folder or hub id (default: bundled splade-tiny)."):
    return typer.Option(None, "--model", "-m", help=help)


def batch_size_option(default: int = 32, help: str = "Texts per encoder batch."):
    return typer.Option(default, "--batch-size", "-b", help=help, min=1)


def filter_option():
    return typer.Option(None, "--filter", help="Metadata key=value (repeat to AND; the same key twice = OR).")


def json_option(help: str = "Print JSON instead of a table."):
    return typer.Option(False, "--json", help=help)


def long_docs_option(default: str = "max"):
    return typer.Option(
        default,
        "--long-docs",
        help="Documents longer than the model's window: max (over windows), passages (best window ranks), truncate.",
    )


def window_option():
    return typer.Option(None, "--window", help="Tokens per window (default: the model's max length).", min=8)


def stride_option():
    return typer.Option(None, "--stride", help="Tokens two neighbouring windows share (default 32).", min=0)


def highlight_option():
    return typer.Option(False, "--highlight", help="Show the words behind each match and a snippet.")


def approx_option():
    return typer.Option(
        None,
        "--approx",
        help="Approximate search: recall@k target in (0, 1] against exact search, met through the index's "
        "tuning table (`spladekit tune`).",
    )


def hybrid_option():
    return typer.Option(
        None,
        "--hybrid",
        help="Fuse with the index's BM25 ranking: rrf (reciprocal rank) or convex (weighted normalised scores).",
    )


def hybrid_weight_option():
    return typer.Option(
        None, "--hybrid-weight", help="convex: share of SPLADE in [0, 1] (default 0.5; 0 = BM25 alone)."
    )


def rrf_k_option():
    return typer.Option(None, "--rrf-k", help="rrf: the rank constant k in 1 / (k + rank) (default 60).")


def hybrid_from_args(method: str | None, weight: float | None, rrf_k: int | None):
    """The ``Hybrid`` of ``--hybrid``, ``--hybrid-weight`` and ``--rrf-k`` (read by ``fusion.check_hybrid``), or
    None without ``--hybrid``."""
    from ..errors import InputError
    from ..index.fusion import check_hybrid

    if method is None:
        if weight is not None or rrf_k is not None:
            raise InputError("--hybrid-weight and --rrf-k need --hybrid rrf|convex")
        return None
    spec: dict = {"method": method}
    if weight is not None:
        spec["weight"] = weight
    if rrf_k is not None:
        spec["k"] = rrf_k
    return check_hybrid(spec)
