"""Export a SPLADE model to ONNX with the pooling inside the graph: ``spladekit export-model --format onnx``.

The graph takes ``input_ids`` and ``attention_mask`` (int64, any batch and length) and returns the pooled sparse
vectors as COO — ``rows`` and ``terms`` (int64) and ``weights`` (float32) of every nonzero weight — so a
consumer never receives the batch × length × vocabulary logits, and nothing is cut (no top-k). Max pooling is
exact: padded positions take the hidden state of the text's first valid token (a duplicate cannot change a max),
the max runs on the raw logits and the activation once per term, as in ``SpladeEncoder``. Sum pooling
activates each token's logits and sums the valid ones. ``OnnxEncoder`` (``onnx_encoder``) runs the folder.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import torch

from ..errors import InputError, ModelLoadError, first_line
from . import pooling
from .encoder import SpladeEncoder
from .onnx_encoder import (
    ACTIVATIONS,
    FORMAT,
    FORMAT_VERSION,
    INPUTS,
    MARKER,
    MODEL_FILE,
    OUTPUTS,
    POOLINGS,
    file_sha256,
    is_onnx_folder,
    load_onnx,
)

OPSET = 18
# Copied from the source model folder when present (tokenizer and config, not weights).
SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "added_tokens.json",
)
CHECK_TEXTS = (
    "Fermentation turns sugar into alcohol.",
    "what is fermentation",
    "a",
    "Yeast (Saccharomyces cerevisiae) is a fungus; 10% of 2.5mg, p53 and IL-6 — café naïve.",
)
CHECK_ATOL = 1e-4


class PooledSplade(torch.nn.Module):
    """A ``SpladeEncoder``'s masked-LM plus SPLADE pooling, returning COO (rows, terms, weights)."""

    def __init__(self, enc: SpladeEncoder) -> None:
        super().__init__()
        self.mlm = enc.mlm  # its vocabulary projection is the identity: it returns the hidden states
        self.weight = enc.head_weight  # (V, d), tied to the input embedding: stored once in the file
        self.register_buffer("bias", enc.head_bias.detach().float().clone())
        self.pooling = enc.spec.pooling_strategy
        self.activation = enc.spec.activation
        self.eval()  # a new Module trains by default: the exporter would restore that, dropout on, in enc.mlm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, d)
        b, length, d = hidden.shape
        valid = attention_mask > 0
        if self.pooling == "max":
            first = valid.to(torch.float32).argmax(dim=1)  # first valid token of each text
            fill = torch.gather(hidden, 1, first.view(-1, 1, 1).expand(b, 1, d))
            hidden = torch.where(valid.unsqueeze(-1), hidden, fill)
            logits = torch.nn.functional.linear(hidden.reshape(-1, d), self.weight, self.bias)
            # fl(x + b) is monotone in x: the max of biased logits is the biased max, exactly
            weights = pooling.activate(logits.reshape(b, length, -1).amax(dim=1), self.activation)
        else:
            logits = torch.nn.functional.linear(hidden.reshape(-1, d), self.weight, self.bias)
            act = pooling.activate(logits, self.activation).reshape(b, length, -1)
            weights = torch.bmm(valid.to(torch.float32).unsqueeze(1), act).squeeze(1)
        weights = torch.where(valid.any(dim=1, keepdim=True), weights, torch.zeros_like(weights))
        vocab = weights.shape[1]
        flat = weights.reshape(-1)
        nz = torch.nonzero(flat > 0).reshape(-1)  # row-major: rows ascending, terms ascending within a row
        return nz // vocab, nz % vocab, flat[nz]


def _require_packages() -> dict:
    missing = []
    versions = {"torch": torch.__version__}
    for name in ("onnx", "onnxruntime", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            missing.append(name)
    if missing:
        raise ModelLoadError(
            f"exporting to ONNX needs {', '.join(missing)}: pip install {' '.join(missing)} "
            "(or: pip install 'spladekit[onnx]')"
        )
    from .. import __version__

    versions["spladekit"] = __version__
    return versions


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists():
        if not output.is_dir():
            raise InputError(f"{output} exists and is not a folder")
        if any(output.iterdir()) and not overwrite:
            raise InputError(f"{output} exists and is not empty (pass --overwrite to replace it)")
        if overwrite and any(output.iterdir()) and not is_onnx_folder(output):
            raise InputError(f"{output} is not an ONNX export folder: refusing to replace it; choose another")


def _export_graph(module: PooledSplade, path: Path, opset: int) -> None:
    """The TorchScript exporter (``dynamo=False``; it needs ``onnx``), with dynamic batch and length.

    torch 2.13's default (dynamo) exporter gives the same vectors too, but needs ``onnxscript``, takes 11 s
    instead of 2.4 s for splade-tiny, and writes the weights to a separate ``.data`` file by default."""
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids > 0).long()
    dyn = {"batch": 0, "length": 1}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, mask),
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            opset_version=opset,
            dynamic_axes={
                "input_ids": {v: k for k, v in dyn.items()},
                "attention_mask": {v: k for k, v in dyn.items()},
                "rows": {0: "nnz"},
                "terms": {0: "nnz"},
                "weights": {0: "nnz"},
            },
            do_constant_folding=True,
            dynamo=False,
        )


def _optimize(src: Path, dst: Path) -> None:
    """onnxruntime's 'extended' graph optimisations (fused LayerNorm, GELU, MatMul), saved to ``dst``.

    Opt-in: the fused nodes are onnxruntime's own (``com.microsoft``), so other runtimes cannot read the file, and
    onnxruntime applies the same fusions when it loads the portable graph (0.2 s for splade-tiny; same speed).
    'extended', not 'all': the layout rewrites of 'all' depend on the machine that saves the file."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def export_onnx(
    model: str | Path | None,
    output: str | Path,
    *,
    opset: int = OPSET,
    optimize: bool = False,
    overwrite: bool = False,
) -> dict:
    """Export ``model`` (a folder, a hub id or None for the bundled splade-tiny) to the folder ``output``.

    Writes ``model.onnx``, the tokenizer and config files and ``spladekit_onnx.json`` (pooling, activation,
    max_length, vocabulary size, the source weights hash, opset, tool versions). The folder is built beside
    ``output`` and renamed into place once the exported graph reproduces the torch encoder on a few texts.
    ``optimize`` saves onnxruntime's fused graph instead of the portable standard-ONNX one (see ``_optimize``).
    Returns the metadata written.
    """
    output = Path(output).expanduser()
    if model is not None and is_onnx_folder(model):
        raise InputError(f"{model} is already an exported ONNX model: export its source model instead")
    versions = _require_packages()
    _check_output(output, overwrite)
    enc = SpladeEncoder.load(model, mode="fp32")
    spec = enc.spec
    if spec.pooling_strategy not in POOLINGS:
        raise ModelLoadError(
            f"{spec.root}: pooling {spec.pooling_strategy!r} cannot be exported (supported: {', '.join(POOLINGS)})"
        )
    if spec.activation not in ACTIVATIONS:
        raise ModelLoadError(
            f"{spec.root}: activation {spec.activation!r} cannot be exported (supported: {', '.join(ACTIVATIONS)})"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        raw = tmp / "raw.onnx"
        try:
            _export_graph(PooledSplade(enc), raw, opset)
            enc.mlm.eval()
        except Exception as e:  # noqa: BLE001 - the exporter's failures are many and deep
            raise ModelLoadError(
                f"{spec.transformer_path}: torch.onnx.export failed ({first_line(e)})"
            ) from None
        if optimize:
            _optimize(raw, tmp / MODEL_FILE)
            raw.unlink()
        else:
            raw.rename(tmp / MODEL_FILE)
        _copy_side_files(enc, tmp)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_file": MODEL_FILE,
            "model_sha256": file_sha256(tmp / MODEL_FILE),
            "model_bytes": (tmp / MODEL_FILE).stat().st_size,
            "inputs": list(INPUTS),
            "outputs": list(OUTPUTS),
            "source": {"name": enc.name, "path": str(spec.root), "weights_sha256": enc.weights_hash},
            "pooling": spec.pooling_strategy,
            "activation": spec.activation,
            "max_length": spec.max_length,
            "do_lower_case": bool(spec.do_lower_case),
            "prompts": dict(spec.prompts),
            "vocab_size": enc.vocab_size,
            "opset": opset,
            "optimized": "ort-extended" if optimize else None,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "versions": versions,
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        meta["check_max_abs_diff"] = _self_check(enc, tmp)
        meta["seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return meta


def _copy_side_files(enc: SpladeEncoder, folder: Path) -> None:
    src = enc.spec.transformer_path
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, folder / name)
    if not (
        folder / "tokenizer.json"
    ).is_file():  # a slow-tokenizer folder: save the fast one transformers built
        backend = getattr(enc.tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(f"{src}: no fast tokenizer (tokenizer.json) to ship with the ONNX model")
        backend.save(str(folder / "tokenizer.json"))


def _self_check(enc: SpladeEncoder, folder: Path) -> float:
    """Encode a few texts with the export and the torch encoder; a difference past 1e-4 fails the export."""
    onnx_enc = load_onnx(folder, mode="fp32")
    worst = 0.0
    for kind in ("query", "document"):
        a = onnx_enc.encode(list(CHECK_TEXTS), kind=kind).to_dense()
        b = enc.encode(list(CHECK_TEXTS), kind=kind, mode="fp32").to_dense()
        worst = max(worst, float(abs(a - b).max()))
    if not worst <= CHECK_ATOL:
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: the exported graph differs from the torch encoder by {worst:.3g} (> 1e-4)"
        )
    return worst
