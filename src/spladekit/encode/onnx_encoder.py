"""`OnnxEncoder`: SPLADE encoding with an exported ONNX graph on onnxruntime, without torch or transformers.

``spladekit export-model`` (``onnx_export``) writes a folder whose ``model.onnx`` takes ``input_ids`` and
``attention_mask`` and returns the pooled sparse vectors in COO form (``rows``, ``terms``, ``weights``): the
batch × length × vocabulary logits exist only inside onnxruntime, for one run at a time, and a token budget per run
bounds them. The vectors equal ``SpladeEncoder``'s fp32 ones within 1e-4 (``tests/test_onnx.py``), and the
encoder reports the source model's weights hash, so an index built with either one is searched with the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelLoadError, first_line
from .base import EMPTY_ROW, EncoderBase, EncodeReport, check_mode, check_threads
from .loading import ModelSpec
from .tokenizing import RustTokenizing

MARKER = "spladekit_onnx.json"  # what makes a folder an exported spladekit ONNX model
MODEL_FILE = "model.onnx"
FORMAT = "spladekit-onnx"
FORMAT_VERSION = 1
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("rows", "terms", "weights")
POOLINGS = ("max", "sum")
ACTIVATIONS = ("relu", "log1p_relu")
# Padded tokens per onnxruntime run. Inside the graph the logits of a run take tokens × vocabulary floats
# (1,024 × 30,522 × 4 B = 125 MB for a BERT vocabulary). Bigger runs are no faster: splade-tiny on scifact, 2 cores,
# best of 3: 20–22 docs/s at 1,024 or 2,048 tokens, 17 at 4,096, 16 at 8,192 (the logits leave the cache).
TOKEN_BUDGET = 1024
INSTALL_HINT = "pip install onnxruntime (or: pip install 'spladekit[onnx]')"


def is_onnx_folder(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is a folder written by ``spladekit export-model --format onnx``; imports nothing."""
    if path is None:
        return False
    try:
        return (Path(path).expanduser() / MARKER).is_file()
    except (OSError, ValueError):
        return False


def read_marker(folder: Path) -> dict:
    """The export's metadata (``spladekit_onnx.json``), checked: format, version, fields this reader needs."""
    path = folder / MARKER
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: unreadable ({first_line(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not a spladekit ONNX export (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: format version {meta.get('format_version')!r}; this spladekit reads version "
            f"{FORMAT_VERSION} (re-export the model with this spladekit)"
        )
    need = ("model_file", "model_sha256", "source", "pooling", "activation", "max_length", "vocab_size")
    missing = [k for k in need if k not in meta]
    if missing or not isinstance(meta["source"], dict) or "weights_sha256" not in meta["source"]:
        raise ModelLoadError(f"{path}: missing fields {', '.join(missing) or 'source.weights_sha256'}")
    if not isinstance(meta["model_file"], str) or Path(meta["model_file"]).name != meta["model_file"]:
        raise ModelLoadError(f"{path}: model_file must be a file name inside the folder")
    if meta["pooling"] not in POOLINGS or meta["activation"] not in ACTIVATIONS:
        raise ModelLoadError(
            f"{path}: pooling {meta['pooling']!r} / activation {meta['activation']!r} is not supported"
        )
    return meta


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def new_session(model_file: Path, threads: int | None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (default: every core)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError(
            f"{model_file}: running an exported ONNX model needs onnxruntime: {INSTALL_HINT}"
        ) from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_count()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: no warnings about unused initialisers on stderr
    try:
        sess = ort.InferenceSession(str(model_file), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelLoadError(f"{model_file}: onnxruntime cannot load it ({first_line(e)})") from None
    names = (tuple(i.name for i in sess.get_inputs()), tuple(o.name for o in sess.get_outputs()))
    if set(names[0]) != set(INPUTS) or names[1] != OUTPUTS:
        raise ModelLoadError(
            f"{model_file}: inputs {names[0]} / outputs {names[1]}; expected {INPUTS} / {OUTPUTS}"
        )
    return sess


class OnnxEncoder(RustTokenizing, EncoderBase):
    """SPLADE encoding with onnxruntime: the same vectors as ``SpladeEncoder`` in fp32 (or exact) mode.

    Load a folder written by ``spladekit export-model`` with :func:`load_onnx` or ``SpladeEncoder.load(folder)``.
    """

    def __init__(self, session, tokenizer, spec: ModelSpec, meta: dict, *, mode: str = "exact") -> None:
        self._sess = session
        self._init_tokenizer(tokenizer)
        self.spec = spec
        self.meta = meta
        self.mode = _check_onnx_mode(mode)
        self._weights_hash = str(meta["source"]["weights_sha256"])
        self.last_report = EncodeReport()
        self._lock = threading.Lock()

    def compute_path(self, mode: str | None = None) -> str:
        """onnxruntime runs the model and the pooling as one graph; fp32 throughout."""
        return f"{mode or self.mode}: onnxruntime ({', '.join(self._sess.get_providers())}), pooling in the graph"

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def weights_hash(self) -> str:
        """The source model's weights hash (recorded at export): indexes built by either encoder match."""
        return self._weights_hash  # type: ignore[return-value]

    # ------------------------------------------------------------------ encoding
    def _check_run_mode(self, mode: str | None) -> str:
        return _check_onnx_mode(mode) if mode is not None else self.mode

    def _encode_units(
        self,
        units,
        mode: str,
        batch_size: int,
        show_progress: bool,
        kind: str,
        token_budget: int = TOKEN_BUDGET,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Units sorted by length, run ``batch_size`` at a time, fewer when a run would pass ``token_budget``
        padded tokens (a longer unit runs alone)."""
        if token_budget < 1:
            raise InputError("token_budget must be at least 1")
        ids = units.ids
        lengths = [len(x) if x is not None else 0 for x in ids]
        rows: list[tuple[np.ndarray, np.ndarray]] = [EMPTY_ROW] * len(ids)
        groups = units.groups()
        bar = _progress(sum(map(len, groups)), show_progress, f"encoding {kind}s")
        with self._lock:
            for group in groups:
                for chunk in _runs(group, lengths, batch_size, token_budget):
                    for i, row in zip(chunk, self.run([ids[i] for i in chunk])):
                        rows[i] = row
                    if bar is not None:
                        bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return rows

    def run(self, batch_ids: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One onnxruntime run: (term ids int32, weights float32) of each tokenised text, padded to the longest."""
        length = max(len(x) for x in batch_ids)
        input_ids = np.zeros((len(batch_ids), length), np.int64)
        mask = np.zeros((len(batch_ids), length), np.int64)
        for j, x in enumerate(batch_ids):
            input_ids[j, : len(x)] = x
            mask[j, : len(x)] = 1
        rows, terms, weights = self._sess.run(list(OUTPUTS), {"input_ids": input_ids, "attention_mask": mask})
        bounds = np.searchsorted(rows, np.arange(len(batch_ids) + 1))  # NonZero yields rows in order
        return [
            (terms[bounds[j] : bounds[j + 1]].astype(np.int32), weights[bounds[j] : bounds[j + 1]])
            for j in range(len(batch_ids))
        ]


def load_onnx(
    path: str | os.PathLike,
    *,
    mode: str = "exact",
    threads: int | None = None,
    max_length: int | None = None,
) -> OnnxEncoder:
    """Load a folder written by ``spladekit export-model --format onnx``.

    ``threads``: onnxruntime intra-op threads (default: every core). ``max_length`` may lower the export's
    token limit, not raise it (the model has position embeddings up to it). Every failure is one ModelLoadError
    line naming the file: no onnxruntime, an unreadable marker, a model.onnx that is corrupt or was replaced.
    """
    _check_onnx_mode(mode)
    check_threads(threads)
    folder = Path(path).expanduser()
    meta = read_marker(folder)
    model_file = folder / str(meta["model_file"])
    if not model_file.is_file():
        raise ModelLoadError(
            f"{model_file}: missing (the export folder is incomplete; export the model again)"
        )
    if file_sha256(model_file) != meta["model_sha256"]:
        raise ModelLoadError(
            f"{model_file}: checksum differs from {MARKER} (corrupt or replaced); export the model again"
        )
    limit = int(meta["max_length"])
    if max_length is not None and not 0 < int(max_length) <= limit:
        raise InputError(f"max_length must be in [1, {limit}] for this export, got {max_length}")
    source = meta["source"]
    spec = ModelSpec(
        name=str(source.get("name") or folder.name),
        transformer_path=folder,
        root=folder,
        pooling_strategy=meta["pooling"],
        activation=meta["activation"],
        max_length=int(max_length) if max_length is not None else limit,
        do_lower_case=bool(meta.get("do_lower_case", False)),
        prompts=dict(meta.get("prompts") or {}),
    )
    tok_file = folder / "tokenizer.json"
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tok_file))
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{tok_file}: cannot load tokenizer ({first_line(e)})") from None
    enc = OnnxEncoder(new_session(model_file, threads), tokenizer, spec, meta, mode=mode)
    try:
        enc.run([[0, 0]])  # a 2-token dry run: a graph that does not fit fails here, not mid-encode
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{model_file}: onnxruntime cannot run it ({first_line(e)})") from None
    return enc


def _check_onnx_mode(mode: str) -> str:
    check_mode(mode)
    if mode == "fast":
        raise InputError(
            "mode 'fast' is not available for an exported ONNX model: it computes fp32 ('exact')"
        )
    return mode


def _runs(order: list[int], lengths: list[int], batch_size: int, budget: int):
    """Consecutive groups of ``order`` (longest first) of at most ``batch_size`` texts and ``budget`` padded tokens."""
    start = 0
    while start < len(order):
        longest = lengths[order[start]]  # sorted: the first text of a run is its longest
        size = max(1, min(batch_size, budget // max(longest, 1)))
        yield order[start : start + size]
        start += size


def _progress(total: int, enabled: bool, desc: str):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text")
