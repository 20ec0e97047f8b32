"""Write an inference-free model as a sentence-transformers folder: a ``Router`` whose query route is a
``SparseStaticEmbedding`` (the table) and whose document route is the masked-LM + ``SpladePooling``.

``SparseEncoder(folder)`` loads it with the same vectors as spladekit (``tests/test_inference_free.py``), and
so does ``SpladeEncoder.load(folder)``. Module type names are sentence-transformers 5's, which 6 still reads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import InputError
from .static_query import QueryTable

QUERY_DIR = "query_0_SparseStaticEmbedding"
MLM_DIR = "document_0_MLMTransformer"
POOL_DIR = "document_1_SpladePooling"
_TYPES = {
    QUERY_DIR: "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding",
    MLM_DIR: "sentence_transformers.sparse_encoder.models.MLMTransformer",
    POOL_DIR: "sentence_transformers.sparse_encoder.models.SpladePooling",
}
# What a masked-LM folder holds that the document route needs (weights, config, tokenizer).
_MLM_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=4) + "\n", encoding="utf-8")


def check_output(out: str | Path, overwrite: bool) -> Path:
    """The output folder, refused before any work when it holds something and ``overwrite`` is off."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"{out}: exists and is not an empty folder (choose another, or pass overwrite)")
    return out


def save_inference_free(encoder, table: QueryTable, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``encoder``'s document side and ``table`` as one sentence-transformers Router folder."""
    out = check_output(out, overwrite)
    spec = encoder.spec
    if spec.pooling_strategy != "max":
        raise InputError(
            f"{spec.name}: only max-pooled models can be written (pooling {spec.pooling_strategy})"
        )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mlm = tmp / MLM_DIR
    mlm.mkdir()
    for name in _MLM_FILES:
        src = spec.transformer_path / name
        if src.is_file():
            shutil.copyfile(src, mlm / name)
    _dump(mlm / "sentence_bert_config.json", {"max_seq_length": encoder.max_length, "do_lower_case": False})
    (tmp / POOL_DIR).mkdir()
    _dump(
        tmp / POOL_DIR / "config.json",
        {
            "pooling_strategy": "max",
            "activation_function": spec.activation,
            "word_embedding_dimension": encoder.vocab_size,
        },
    )
    table.save_sentence_transformers(tmp / QUERY_DIR, spec.transformer_path)
    _dump(
        tmp / "router_config.json",
        {
            "types": _TYPES,
            "structure": {"query": [QUERY_DIR], "document": [MLM_DIR, POOL_DIR]},
            "parameters": {"default_route": "document", "allow_empty_key": True},
        },
    )
    _dump(
        tmp / "modules.json",
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Router"}],
    )
    _dump(
        tmp / "config_sentence_transformers.json",
        {"model_type": "SparseEncoder", "prompts": dict(spec.prompts), "default_prompt_name": None},
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
