"""Tokenising with a `tokenizers.Tokenizer` (the Rust library), shared by the encoders that run without
transformers: the numpy ``LiteEncoder`` and the onnxruntime ``OnnxEncoder``."""

from __future__ import annotations

import threading
from typing import Any


class RustTokenizing:
    """``_tokenize`` for an encoder holding a ``tokenizers.Tokenizer``: truncation follows ``max_length`` (as
    ``SpladeEncoder`` does) and is set under a lock, because the Rust object cannot be reconfigured while another
    thread (e.g. a server's) encodes with it."""

    def _init_tokenizer(self, tokenizer: Any) -> None:
        tokenizer.no_padding()
        self._tok = tokenizer
        self._tok_lock = threading.Lock()
        self._truncation: int | None = None

    def _token_of(self, i: int) -> str | None:
        return self._tok.id_to_token(i)

    @property
    def _window_tokenizer(self) -> Any:
        return self._tok

    def _tokenize(self, texts: list[str], kind: str) -> tuple[list[list[int] | None], list[bool]]:
        """Token ids per text (None for an empty text) and which texts were truncated."""
        texts, non_empty = self.model_texts(texts, kind)  # type: ignore[attr-defined]
        out: list[list[int] | None] = [None] * len(texts)
        truncated = [False] * len(texts)
        if non_empty:
            with self._tok_lock:
                if self._truncation != self.max_length:  # type: ignore[attr-defined]
                    self._tok.enable_truncation(self.max_length)  # type: ignore[attr-defined]
                    self._truncation = self.max_length  # type: ignore[attr-defined]
                encodings = self._tok.encode_batch([texts[i] for i in non_empty])
            for i, e in zip(non_empty, encodings):
                out[i] = e.ids
                truncated[i] = bool(e.overflowing)
        return out, truncated
