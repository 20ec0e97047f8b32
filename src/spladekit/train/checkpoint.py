"""Checkpoints as sentence-transformers SparseEncoder folders (loadable by ``SparseEncoder(path)`` and
``SpladeEncoder.load(path)``), plus the optimiser state needed to resume training."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

from ..encode.st_folder import save_inference_free
from ..encode.static_query import QueryTable
from ..errors import InputError
from .batching import eval_mode

TRANSFORMER_TYPE = "sentence_transformers.base.modules.transformer.Transformer"
POOLING_TYPE = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"
STATE_FILE = "trainer_state.pt"
POOLING_DIR = "1_SpladePooling"
TRAIN_INFO_FILE = "spladekit_train.json"  # what a run (or a soup) records about how the weights were made


def _versions() -> dict:
    import transformers

    out = {"pytorch": torch.__version__, "transformers": transformers.__version__}
    try:
        import sentence_transformers

        out["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:  # saving does not need sentence-transformers installed
        pass
    return out


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON with a final newline (every JSON file a run writes)."""
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def partial_path(path: Path) -> Path:
    """Where a folder is built before ``move_into_place`` renames it to ``path``: ``path.partial``, with any
    leftover of an interrupted write removed."""
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def save_sparse_encoder(
    encoder, path: str | Path, *, extra: dict | None = None, query_table: QueryTable | None = None
) -> Path:
    """Write ``encoder`` (a SpladeEncoder) as a SparseEncoder folder: HF masked-LM + tokenizer at the root,
    ``modules.json`` (Transformer at "", SpladePooling at ``1_SpladePooling``) and the ST config files.
    With ``query_table`` (inference-free) it is a Router folder instead, in ``encode.st_folder``'s layout.

    The folder is written next to ``path`` and renamed into place, so a crash never leaves a half checkpoint.
    ``extra`` (e.g. training metrics) goes to ``spladekit_train.json`` (``TRAIN_INFO_FILE``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a folder")
    if query_table is not None:
        return _save_router(encoder, path, query_table, extra)
    tmp = partial_path(path)
    tmp.mkdir(parents=True)
    with eval_mode(encoder.mlm) as model:
        model.save_pretrained(str(tmp), safe_serialization=True)
    encoder.tokenizer.save_pretrained(str(tmp))
    write_json(
        tmp / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": TRANSFORMER_TYPE},
            {"idx": 1, "name": "1", "path": POOLING_DIR, "type": POOLING_TYPE},
        ],
    )
    write_json(
        tmp / "sentence_bert_config.json",
        {
            "transformer_task": "fill-mask",
            "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
            "module_output_name": "token_embeddings",
        },
    )
    prompts = dict(encoder.spec.prompts or {})
    write_json(
        tmp / "config_sentence_transformers.json",
        {
            "__version__": _versions(),
            "default_prompt_name": None,
            "model_type": "SparseEncoder",
            "prompts": {"document": prompts.get("document", ""), "query": prompts.get("query", "")},
            "similarity_fn_name": None,
        },
    )
    (tmp / POOLING_DIR).mkdir()
    write_json(
        tmp / POOLING_DIR / "config.json",
        {
            "pooling_strategy": encoder.spec.pooling_strategy,
            "activation_function": encoder.spec.activation,
            "embedding_dimension": None,
        },
    )
    if extra is not None:
        write_json(tmp / TRAIN_INFO_FILE, extra)
    return move_into_place(tmp, path)


def _save_router(encoder, path: Path, table: QueryTable, extra: dict | None) -> Path:
    """The in-memory masked-LM is written to a scratch folder first, since ``save_inference_free`` (the one
    place the Router layout is written) copies the document model's files from ``spec.transformer_path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.mlm-") as scratch:
        with eval_mode(encoder.mlm) as model:
            model.save_pretrained(scratch, safe_serialization=True)
        encoder.tokenizer.save_pretrained(scratch)
        view = SimpleNamespace(
            spec=dataclasses.replace(encoder.spec, transformer_path=Path(scratch)),
            max_length=encoder.max_length,
            vocab_size=encoder.vocab_size,
        )
        save_inference_free(view, table, tmp)
    if extra is not None:
        write_json(tmp / TRAIN_INFO_FILE, extra)
    return move_into_place(tmp, path)


def move_into_place(tmp: Path, path: Path) -> Path:
    """Rename the finished folder ``tmp`` to ``path``, replacing an older ``path`` only once ``tmp`` is complete."""
    if path.exists():
        old = path.with_name(path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    return path


def save_state(path: str | Path, state: dict) -> None:
    """Optimiser, scheduler, step and RNG state next to the weights (``trainer_state.pt``), for resuming."""
    path = Path(path)
    tmp = path / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path / STATE_FILE)


def load_state(path: str | Path) -> dict:
    """Read ``trainer_state.pt`` of a checkpoint folder (clear error when it is not a resumable checkpoint)."""
    f = Path(path) / STATE_FILE
    if not f.is_file():
        raise InputError(
            f"{path}: not a resumable checkpoint (no {STATE_FILE}); pass it as 'model' to start from it"
        )
    return torch.load(f, map_location="cpu", weights_only=False)
