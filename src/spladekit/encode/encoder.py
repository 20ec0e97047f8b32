"""`SpladeEncoder`: text -> SPLADE sparse vectors, for queries and documents, exact by default."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, ModelLoadError, first_line
from . import pooling
from .base import EMPTY_ROW, EncoderBase, EncodeReport, Mode, check_mode, check_threads, sparsify
from .device import cpu_supports_bf16, resolve_device
from .loading import BUNDLED_NAME, ModelSpec, read_spec, resolve_model
from .threads import batch_workers, torch_threads


class SpladeEncoder(EncoderBase):
    """A SPLADE model: a masked-LM whose logits are max-pooled over tokens into a vocabulary-sized sparse vector.

    Modes: ``exact`` gives the fp32 result (a bf16 screen with a proven error bound, then fp32 on the surviving
    terms, where the CPU has bf16; plain fp32 chunks otherwise); ``fp32`` always computes every logit in fp32;
    ``fast`` pools only content tokens (skips punctuation and stopword tokens in the head, ~30% of tokens), with
    the exact screen: kept weights equal fp32, a few low-weight terms are lost (fidelity in ``bench/encode.py``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        spec: ModelSpec,
        *,
        mode: Mode = "exact",
        threads: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = resolve_device(device)
        # the masked-LM (nn.Module); `model` elsewhere is a name or an info dict
        self.mlm = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.spec = spec
        self.mode = check_mode(mode)
        # Torch threads for this encoder's calls (None: torch's default); applied around each call, not globally.
        self.threads = check_threads(threads)
        decoder = model.get_output_embeddings()
        if decoder is None or not hasattr(decoder, "weight"):
            raise ModelLoadError(f"{spec.transformer_path}: model has no output (vocabulary) projection")
        self._decoder = decoder
        # The vocabulary projection is done by our pooling kernels; the model itself stops at the transformed
        # hidden state, so the batch × length × vocab logits never exist.
        decoder.forward = _identity  # type: ignore[method-assign]
        self._lock = threading.Lock()
        self._lowp_cache: tuple | None = None
        self._skip: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_report = EncodeReport()
        self._fast_tok = tokenizer.backend_tokenizer if hasattr(tokenizer, "backend_tokenizer") else None
        # tokenizers' Rust object cannot be reconfigured while another thread encodes with it (e.g. the server)
        self._tok_lock = threading.Lock()
        self._id_to_token = {i: t for t, i in tokenizer.get_vocab().items()}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        name_or_path: str | Path | None = None,
        *,
        mode: Mode = "exact",
        threads: int | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> SpladeEncoder:
        """Load the bundled splade-tiny (no argument), a local model folder, or a hub id (online only).

        ``threads``: torch threads this encoder uses for its calls (default: every core). ``device``: "cpu"
        (default), "cuda", "cuda:N" or "auto" (CUDA when there is one); on a GPU the same pooling runs on the device.
        A folder written by ``spladekit export-model --format onnx`` loads as an ``OnnxEncoder`` (onnxruntime, CPU,
        same vectors)."""
        from .onnx_encoder import is_onnx_folder, load_onnx

        dev = resolve_device(device)
        if is_onnx_folder(name_or_path):
            if dev.type != "cpu":
                raise InputError(
                    f"{name_or_path}: an ONNX folder runs on the CPU (onnxruntime); device {device!r}"
                )
            return load_onnx(name_or_path, mode=mode, threads=threads, max_length=max_length)  # type: ignore[return-value]
        check_mode(mode)
        check_threads(threads)
        root = resolve_model(name_or_path)
        name = (
            BUNDLED_NAME if name_or_path is None or str(name_or_path) == BUNDLED_NAME else str(name_or_path)
        )
        spec = read_spec(root, name)
        if max_length is not None:
            spec.max_length = int(max_length)
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            with _quiet_progress():
                model = AutoModelForMaskedLM.from_pretrained(str(spec.transformer_path), dtype=torch.float32)
        except Exception as e:  # noqa: BLE001 - one line naming the file, not a transformers traceback
            raise ModelLoadError(
                f"{spec.transformer_path}: cannot load model weights ({first_line(e)})"
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(spec.transformer_path))
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(
                f"{spec.transformer_path}: cannot load tokenizer ({first_line(e)})"
            ) from None
        if spec.do_lower_case is None:
            spec.do_lower_case = bool(getattr(tokenizer, "do_lower_case", False))
        return cls(model, tokenizer, spec, mode=mode, threads=threads, device=dev)

    # ------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        return int(self._decoder.weight.shape[0])

    @property
    def head_weight(self) -> torch.Tensor:
        """Vocabulary projection (V, d): the row of a term is its output embedding."""
        return self._decoder.weight

    @property
    def head_bias(self) -> torch.Tensor:
        b = self._decoder.bias
        return b if b is not None else torch.zeros(self.vocab_size, device=self.head_weight.device)

    def compute_path(self, mode: Mode | None = None) -> str:
        """Which head computation ``mode`` runs on this machine, and why (bench output, issue reports)."""
        mode = mode or self.mode
        device = self.head_weight.device
        cap = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
        if self.spec.pooling_strategy == "sum":
            return f"fp32 sum pooling ({cap})"
        skip = ", stopword tokens not pooled" if mode == "fast" else ""
        if device.type != "cpu":
            return f"{mode}: fp32 head on {device} in vocabulary chunks, no logits tensor{skip}"
        if mode != "fp32" and cpu_supports_bf16():
            return f"{mode}: bf16 screen with a proven bound, fp32 on the surviving terms ({cap} with bf16){skip}"
        why = "fp32 asked" if mode == "fp32" else "no native bf16 on this CPU, so exact = fp32"
        return f"{mode}: fp32 head, {pooling.head_layout(device)} blocks ({cap}; {why}){skip}"

    def _token_of(self, i: int) -> str | None:
        return self._id_to_token.get(i)

    # ------------------------------------------------------------------ encoding
    def _encode_units(
        self, units, mode: str, batch_size: int, show_progress: bool, kind: str, **options
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Runs of ``batch_size`` units (``units.batches``: sorted by length to cut padding), encoded by the
        masked-LM and pooled by ``pool``; runs go to ``batch_workers`` in parallel where that is faster."""
        if options:
            raise InputError(f"unknown encode option(s): {', '.join(sorted(options))}")
        ids = units.ids
        rows: list[tuple[np.ndarray, np.ndarray]] = [EMPTY_ROW] * len(ids)
        workers = self.threads or torch.get_num_threads()  # what batch_workers will run with
        chunks = units.batches(batch_size, workers)
        bar = _progress(sum(map(len, chunks)), show_progress, f"encoding {kind}s")
        parallel = len(chunks) if self.device.type == "cpu" else 1  # a GPU runs batches one after another
        with self._lock, torch_threads(self.threads), batch_workers(parallel) as run:
            for chunk, weights in zip(
                chunks, run(lambda c: self._encode_batch([ids[i] for i in c], mode), chunks)
            ):
                for j, i in enumerate(chunk):
                    rows[i] = sparsify(weights[j].float().numpy(), None, 0.0)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return rows

    @property
    def _window_tokenizer(self):
        return self._fast_tok

    def _tokenize(self, texts: list[str], kind: str) -> tuple[list[list[int] | None], list[bool]]:
        texts, non_empty = self.model_texts(texts, kind)
        out: list[list[int] | None] = [None] * len(texts)
        truncated = [False] * len(texts)
        if not non_empty:
            return out, truncated
        if self._fast_tok is not None:
            tok = self._fast_tok
            with self._tok_lock:
                tok.no_padding()
                tok.enable_truncation(self.max_length)
                encs = tok.encode_batch([texts[i] for i in non_empty])
            for i, e in zip(non_empty, encs):
                out[i] = e.ids
                truncated[i] = bool(e.overflowing)
        else:
            enc = self.tokenizer([texts[i] for i in non_empty], truncation=True, max_length=self.max_length)
            full = self.tokenizer([texts[i] for i in non_empty], truncation=False)["input_ids"]
            for i, e, f in zip(non_empty, enc["input_ids"], full):
                out[i] = e
                truncated[i] = len(f) > len(e)
        return out, truncated

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The masked-LM's hidden states right before the vocabulary projection (B, L, d)."""
        return self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits

    def token_logits(self, input_ids: list[int], terms: np.ndarray) -> np.ndarray:
        """Logits (L, T) float32 of ``terms`` at every token of one tokenised text (ids include [CLS]/[SEP]):
        only those rows of the vocabulary projection (match provenance, ``provenance.term_sources``)."""
        cols = torch.as_tensor(np.asarray(terms, np.int64))
        ids = torch.tensor([list(input_ids)], dtype=torch.long)
        with self._lock, torch_threads(self.threads), torch.no_grad():
            ids = ids.to(self.device)
            hidden = self.hidden_states(ids, torch.ones_like(ids))[0].float()
            cols = cols.to(self.device)
            w = self.head_weight.detach().float()[cols]
            out = hidden @ w.T + self.head_bias.detach().float()[cols]
        return out.cpu().numpy().astype(np.float32, copy=False)

    def _head_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fp32 W^T, bf16 W, bf16 W^T, row norms), rebuilt when the head weights change (e.g. training)."""
        w = self.head_weight
        key = (w.data_ptr(), w._version)
        if self._lowp_cache is None or self._lowp_cache[0] != key:
            wd = w.detach().float()
            lowp = wd.to(torch.bfloat16)
            self._lowp_cache = (key, wd.t().contiguous(), lowp, lowp.t().contiguous(), wd.norm(dim=1))
        return self._lowp_cache[1:]

    def _encode_batch(self, batch_ids: list[list[int]], mode: str) -> torch.Tensor:
        """(B, V) float32 weights on the CPU for one batch of token ids; the work runs on ``self.device``."""
        length = max(len(x) for x in batch_ids)
        input_ids = torch.zeros((len(batch_ids), length), dtype=torch.long)
        mask = torch.zeros((len(batch_ids), length), dtype=torch.bool)
        for j, x in enumerate(batch_ids):
            input_ids[j, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[j, : len(x)] = True
        head_mask = None
        if mode == "fast" and self.spec.pooling_strategy == "max":
            skip, special = self._skip_tokens()
            head_mask = mask & ~skip[input_ids]
            empty = ~(head_mask & ~special[input_ids]).any(dim=1)
            if bool(empty.any()):  # a text of only stopwords/punctuation keeps all its tokens
                head_mask[empty] = mask[empty]
        dev = self.device
        hidden = self.hidden_states(input_ids.to(dev), mask.long().to(dev))
        weights = self.pool(
            hidden, mask.to(dev), mode, head_mask=None if head_mask is None else head_mask.to(dev)
        )
        if head_mask is not None:
            # A skipped token still scores its own term (one dot product each): "%", "when", "no" keep their
            # weight when they are the token that carries it.
            skipped = mask & ~head_mask
            if bool(skipped.any()):
                rows, cols = torch.nonzero(skipped, as_tuple=True)
                terms = input_ids[rows, cols].to(dev)
                rows, cols = rows.to(dev), cols.to(dev)
                w = self.head_weight.detach().float()
                own = (hidden[rows, cols].float() * w[terms]).sum(dim=1) + self.head_bias.detach().float()[
                    terms
                ]
                own = pooling.activate(own, self.spec.activation)
                flat = weights.view(-1)
                flat.scatter_reduce_(0, rows * weights.shape[1] + terms, own, reduce="amax")
        return weights.cpu()

    def _skip_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Vocabulary masks: tokens fast mode does not pool (punctuation-only pieces, English stopwords), specials.

        They still shape every other token's hidden state in the transformer; they only stop being candidates for
        the max. On scifact they are 31% of the tokens but the arg-max token of only 0.06% of top-10 terms.
        """
        if self._skip is None:
            from bm25s.stopwords import STOPWORDS_EN

            stop = set(STOPWORDS_EN)
            specials = set(getattr(self.tokenizer, "all_special_tokens", []) or [])
            skip = torch.zeros(self.vocab_size, dtype=torch.bool)
            special = torch.zeros(self.vocab_size, dtype=torch.bool)
            for i, tok in enumerate(self.vocab):
                if tok in specials:
                    special[i] = True
                elif tok.startswith("[unused"):
                    continue
                elif tok in stop or not any(c.isalnum() for c in tok):
                    skip[i] = True
            self._skip = (skip, special)
        return self._skip

    def pool(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        mode: str | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """SPLADE weights (B, V) from hidden states, without materialising (B, L, V).

        ``head_mask`` (fast mode) restricts the max to a subset of each text's tokens; the kept tokens are packed
        to the front so the head multiplies only them.
        """
        mode = mode or self.mode
        if head_mask is not None:
            hidden, mask = _pack_tokens(hidden, head_mask)
        w, b = self.head_weight.detach(), self.head_bias.detach().float()
        act = self.spec.activation
        if self.spec.pooling_strategy == "sum":
            return pooling.masked_sum_activated(hidden, mask, w, b, act)
        if hidden.device.type != "cpu":  # a GPU computes every logit in fp32 fast enough: no screen needed
            return pooling.activate(pooling.masked_max_logits(hidden.float(), mask, w.float()) + b, act)
        wt, wl, wlt, norms = self._head_tables()
        if mode == "fp32" or not cpu_supports_bf16():
            maxlog = pooling.max_logits(hidden.float(), mask, w.float(), wt) + b
        elif mode == "exact":
            maxlog = pooling.screened_max_logits(
                hidden.float(), mask, w.float(), b, wl, norms, weight_lowp_t=wlt
            )
        else:  # fast: the exact screen over the pooled tokens (see _skip_tokens)
            maxlog = pooling.screened_max_logits(
                hidden.float(), mask, w.float(), b, wl, norms, weight_lowp_t=wlt
            )
        return pooling.activate(maxlog, act)


def _pack_tokens(hidden: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's kept tokens to the front: (B, L', d) hidden and (B, L') mask, L' = most kept in a row."""
    counts = keep.sum(dim=1)
    width = max(int(counts.max()), 1) if keep.numel() else 1
    out = hidden.new_zeros((hidden.shape[0], width, hidden.shape[2]))
    new_mask = torch.arange(width, device=keep.device).unsqueeze(0) < counts.unsqueeze(1)
    out[new_mask] = hidden[keep]
    return out, new_mask


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _progress(total: int, enabled: bool, desc: str):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text")


@contextlib.contextmanager
def _quiet_progress():
    old = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = old
