"""`LiteEncoder`: SPLADE query/inspect encoding in plain numpy, without torch or transformers.

A cold ``spladekit search`` spends ~10 s importing torch and transformers to encode a 10-token query. This module
runs the same BERT / DistilBERT masked-LM forward pass in float32 numpy (weights read with ``safetensors``, text
split with ``tokenizers``) followed by SPLADE pooling, and returns the same vectors as
``SpladeEncoder.load(mode="fp32")`` to float32 rounding (|Δw| < 1e-4, see ``tests/test_encode_lite.py``).

Each text is run on its own (no padding, no attention mask): queries are short, and a text's result does not
depend on what it is batched with. Documents work too, but long batches are faster with ``SpladeEncoder``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelLoadError, first_line
from .base import EMPTY_ROW, EncoderBase, EncodeReport, sparsify
from .lite_bert import ARCHITECTURES, MaskedLM, build_masked_lm
from .loading import BUNDLED_NAME, ModelSpec, read_spec, resolve_model
from .tokenizing import RustTokenizing

# Logits held per block of the vocabulary projection (tokens × vocabulary slice): 1M floats = 4 MB, cache-sized.
BLOCK_ELEMS = 1 << 20


# ---------------------------------------------------------------------------------------------- encoder
class LiteEncoder(RustTokenizing, EncoderBase):
    """SPLADE encoding with a numpy forward pass: the same vectors as ``SpladeEncoder`` in fp32 mode.

    Needs a folder with ``config.json`` (BertForMaskedLM or DistilBertForMaskedLM), ``model.safetensors`` and
    ``tokenizer.json``; load it with :func:`load_lite`.
    """

    mode = "fp32"

    def __init__(self, model: MaskedLM, tokenizer, spec: ModelSpec) -> None:
        self._m = model
        self._init_tokenizer(tokenizer)
        self.spec = spec
        self._weights_hash: str | None = None
        self.last_report = EncodeReport()

    @property
    def vocab_size(self) -> int:
        return int(self._m.decoder_t.shape[1])

    # ------------------------------------------------------------------ encoding
    def compute_path(self, mode: str | None = None) -> str:
        """numpy runs the forward pass and the head, fp32; no torch in the process."""
        return "fp32: numpy forward pass and head (no torch)"

    def _check_run_mode(self, mode: str | None) -> str:
        if mode not in (None, "fp32", "exact"):
            raise InputError(
                f"mode {mode!r} is not available in the lite encoder: it computes fp32 (or 'exact')"
            )
        return "fp32"

    def _encode_units(
        self, units, mode: str, batch_size: int, show_progress: bool, kind: str, **options
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Units one at a time (``batch_size`` and ``show_progress`` are accepted for compatibility with
        ``SpladeEncoder``; numpy gains nothing from padding texts into a batch)."""
        if options:
            raise InputError(f"unknown encode option(s): {', '.join(sorted(options))}")
        return [EMPTY_ROW if x is None else sparsify(self.weights(x), None, 0.0) for x in units.ids]

    def hidden_states(self, input_ids: Sequence[int]) -> np.ndarray:
        """One text's hidden states after the MLM head transform, right before the vocabulary projection (L, d)."""
        return self._m.hidden_states(input_ids)

    def token_logits(self, input_ids: Sequence[int], terms: np.ndarray) -> np.ndarray:
        """Logits (L, T) float32 of ``terms`` at every token of one tokenised text (ids include [CLS]/[SEP]):
        only those columns of the vocabulary projection (match provenance, ``provenance.term_sources``)."""
        cols = np.asarray(terms, np.int64)
        m = self._m
        return (m.hidden_states(input_ids) @ m.decoder_t[:, cols] + m.decoder_b[cols]).astype(np.float32)

    def weights(self, input_ids: Sequence[int]) -> np.ndarray:
        """Dense SPLADE weights (V,) float32 of one tokenised text (ids include [CLS]/[SEP])."""
        m = self._m
        h = m.hidden_states(input_ids)
        vocab = m.decoder_t.shape[1]
        step = max(1024, BLOCK_ELEMS // max(len(h), 1))
        if self.spec.pooling_strategy == "sum":
            out = np.empty(vocab, np.float32)
            for v0 in range(0, vocab, step):
                logits = h @ m.decoder_t[:, v0 : v0 + step]
                logits += m.decoder_b[v0 : v0 + step]
                out[v0 : v0 + step] = self._activate(logits).sum(axis=0)
            return out
        if step >= vocab:
            best = (h @ m.decoder_t).max(axis=0)
        else:
            best = np.empty(vocab, np.float32)
            for v0 in range(0, vocab, step):
                best[v0 : v0 + step] = (h @ m.decoder_t[:, v0 : v0 + step]).max(axis=0)
        # log1p(relu(.)) is monotone: the max over tokens commutes with the activation
        best += m.decoder_b
        return self._activate(best)

    def _activate(self, x: np.ndarray) -> np.ndarray:
        y = np.log1p(np.maximum(x, np.float32(0.0)))
        if self.spec.activation == "log1p_relu":
            y = np.log1p(y)
        return y


def load_lite(name_or_path: str | Path | None = None, *, max_length: int | None = None) -> LiteEncoder:
    """Load the bundled splade-tiny (no argument), a local model folder, or a hub id, for numpy encoding.

    Raises ModelLoadError when the folder is not something this encoder runs: an architecture other than
    BertForMaskedLM / DistilBertForMaskedLM, no tokenizer.json, no model.safetensors, or an unknown pooling.
    """
    root = resolve_model(name_or_path)
    name = BUNDLED_NAME if name_or_path is None or str(name_or_path) == BUNDLED_NAME else str(name_or_path)
    spec = read_spec(root, name)
    if max_length is not None:
        spec.max_length = int(max_length)
    folder = spec.transformer_path
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))  # read_spec checked it parses
    archs = cfg.get("architectures") or []
    model_type = cfg.get("model_type")
    arch = next((a for a in archs if a in ARCHITECTURES), None)
    if arch is None and not archs:
        arch = {"bert": "BertForMaskedLM", "distilbert": "DistilBertForMaskedLM"}.get(model_type)
    if arch is None:
        what = ", ".join(archs) if archs else f"model_type {model_type!r}"
        raise ModelLoadError(
            f"{folder}: architecture {what} is not supported by the lite encoder "
            f"({' or '.join(ARCHITECTURES)}); use SpladeEncoder"
        )
    if spec.pooling_strategy not in ("max", "sum"):
        raise ModelLoadError(
            f"{root}: pooling strategy {spec.pooling_strategy!r} is not supported (max or sum)"
        )
    tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise ModelLoadError(f"{folder}: no tokenizer.json (the lite encoder needs a fast-tokenizer file)")
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tok_file))
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{tok_file}: cannot load tokenizer ({first_line(e)})") from None
    if spec.do_lower_case is None:
        spec.do_lower_case = _tokenizer_lower_case(folder, model_type)
    try:
        enc = LiteEncoder(build_masked_lm(folder, cfg, arch), tokenizer, spec)
        enc.hidden_states(
            [0, 0]
        )  # a 2-token dry run: weights whose shapes do not fit fail here, not mid-search
    except (ValueError, TypeError, KeyError, IndexError) as e:
        if isinstance(e, ModelLoadError):
            raise
        raise ModelLoadError(
            f"{folder}: the lite encoder cannot run these weights ({first_line(e)})"
        ) from None
    return enc


def _tokenizer_lower_case(folder: Path, model_type: str | None) -> bool:
    """``do_lower_case`` as transformers' tokenizer would report it (BERT-family tokenizers default to True)."""
    tc: dict = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            tc = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"{folder / 'tokenizer_config.json'}: unreadable ({e})") from None
    if "do_lower_case" in tc:
        return bool(tc["do_lower_case"])
    cls = tc.get("tokenizer_class") or {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer"}.get(
        model_type or "", ""
    )
    return cls.startswith(("BertTokenizer", "DistilBertTokenizer"))
