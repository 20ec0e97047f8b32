"""Weight averaging ("model soup", Wortsman et al. 2022) of checkpoints fine-tuned from the same start model.

Averaging runs that differ only in seed or schedule cancels part of their seed-to-seed noise at no inference cost.
The inputs are SparseEncoder folders as ``spladekit train`` writes them (or plain masked-LM folders); the output
is the same kind of folder, so ``spladekit eval``, ``SpladeEncoder.load`` and ``SparseEncoder`` read it as usual.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from .checkpoint import POOLING_DIR, STATE_FILE, TRAIN_INFO_FILE, move_into_place, partial_path, write_json

WEIGHTS = "model.safetensors"
# files of a training checkpoint that describe one run, not the average
_RUN_FILES = {WEIGHTS, STATE_FILE, TRAIN_INFO_FILE}
# config keys that may differ between otherwise identical models
_VOLATILE = {"transformers_version", "_name_or_path"}


def _config(folder: Path) -> dict:
    f = folder / "config.json"
    if not f.is_file():
        raise InputError(f"{folder}: no config.json (not a model folder)")
    return {k: v for k, v in json.loads(f.read_text(encoding="utf-8")).items() if k not in _VOLATILE}


def _pooling(folder: Path) -> dict | None:
    f = folder / POOLING_DIR / "config.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def average_checkpoints(
    checkpoints: Sequence[str | Path], output: str | Path, weights: Sequence[float] | None = None
) -> Path:
    """Write the (weighted) mean of the checkpoints' parameters to ``output``; returns ``output``.

    All checkpoints must share architecture, parameter names and shapes, and pooling; weights default to uniform
    and are normalised to sum 1. Tokenizer and configuration files are copied from the first checkpoint. The
    folder is written beside ``output`` and renamed into place, and ``output`` may not be one of the inputs.
    """
    folders = [Path(c) for c in checkpoints]
    if len(folders) < 2:
        raise InputError("soup: give at least two checkpoints to average")
    out = Path(output)
    for f in folders:
        if not (f / WEIGHTS).is_file():
            raise InputError(f"soup: {f} has no {WEIGHTS} (not a spladekit/sentence-transformers checkpoint)")
        if out.exists() and f.resolve() == out.resolve():
            raise InputError(f"soup: the output {out} is one of the inputs")
    if out.exists() and not out.is_dir():
        raise InputError(f"soup: {out} exists and is not a folder")
    if weights is None:
        weights = [1.0] * len(folders)
    if len(weights) != len(folders):
        raise InputError(f"soup: {len(weights)} weights for {len(folders)} checkpoints")
    if any(not (w > 0) for w in weights):
        raise InputError("soup: weights must be positive")
    total = float(sum(weights))
    norm = [float(w) / total for w in weights]

    cfg0, pool0 = _config(folders[0]), _pooling(folders[0])
    for f in folders[1:]:
        if _config(f) != cfg0:
            raise InputError(
                f"soup: {f}/config.json differs from {folders[0]}/config.json (different models)"
            )
        if _pooling(f) != pool0:
            raise InputError(f"soup: {f} pools differently from {folders[0]} ({POOLING_DIR}/config.json)")

    acc: dict[str, torch.Tensor] = {}
    first = load_file(str(folders[0] / WEIGHTS))
    for name, t in first.items():
        acc[name] = t.double() * norm[0] if t.is_floating_point() else t
    for f, w in zip(folders[1:], norm[1:]):
        sd = load_file(str(f / WEIGHTS))
        if sd.keys() != first.keys():
            diff = sorted(set(sd) ^ set(first))
            raise InputError(f"soup: {f} has other parameters than {folders[0]} (e.g. {diff[0]!r})")
        for name, t in sd.items():
            if t.shape != first[name].shape:
                raise InputError(
                    f"soup: parameter {name!r} is {tuple(t.shape)} in {f} but {tuple(first[name].shape)} "
                    f"in {folders[0]}"
                )
            if t.is_floating_point():
                acc[name] += t.double() * w
            elif not torch.equal(t, first[name]):
                raise InputError(f"soup: integer buffer {name!r} differs between {folders[0]} and {f}")
    averaged = {n: (a.to(first[n].dtype) if first[n].is_floating_point() else a) for n, a in acc.items()}

    tmp = partial_path(out)
    shutil.copytree(folders[0], tmp, ignore=lambda _d, names: [n for n in names if n in _RUN_FILES])
    save_file(averaged, str(tmp / WEIGHTS), metadata={"format": "pt"})
    write_json(tmp / TRAIN_INFO_FILE, {"soup": {"checkpoints": [str(f) for f in folders], "weights": norm}})
    return move_into_place(tmp, out)
