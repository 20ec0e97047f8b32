"""``spladekit export-model``: a model as an ONNX graph with SPLADE pooling inside, for onnxruntime and others."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .options import model_option, output_option

FORMATS = ("onnx",)


def register(app: typer.Typer) -> None:
    """Add ``export-model`` to ``app``."""
    app.command("export-model")(export_model_cmd)


def export_model_cmd(
    model_arg: str = typer.Argument(
        None, metavar="[MODEL]", help="Model folder or hub id (default: bundled splade-tiny)."
    ),
    fmt: str = typer.Option("onnx", "--format", help="onnx (the only format so far)."),
    output: Path = output_option("New folder for model.onnx, tokenizer, config and spladekit_onnx.json."),
    model: str = model_option("Same as MODEL."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version.", min=14),
    optimize: bool = typer.Option(
        False,
        "--optimize",
        help="Save onnxruntime's fused graph instead of the portable one (loads faster; runs in onnxruntime only).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in the folder."),
) -> None:
    """Export a model to ONNX with SPLADE pooling in the graph: input_ids + attention_mask in, the pooled sparse
    vectors out (COO rows, terms, weights). Load the folder with SpladeEncoder.load(DIR) or --model DIR."""
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if model_arg is not None and model is not None and model_arg != model:
        raise InputError(f"two models given: {model_arg!r} and --model {model!r}; give one")
    from ..encode.onnx_export import export_onnx

    meta = export_onnx(
        model_arg if model_arg is not None else model,
        output,
        opset=opset,
        optimize=optimize,
        overwrite=overwrite,
    )
    mb = meta["model_bytes"] / 1e6
    typer.echo(
        f"{output}: {meta['source']['name']} as ONNX (opset {meta['opset']}, {mb:.1f} MB model.onnx, "
        f"{meta['pooling']} pooling, {meta['activation']}); max |Δ| against torch on check texts "
        f"{meta['check_max_abs_diff']:.1e}"
    )
