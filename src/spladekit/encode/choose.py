"""Which encoder runs where: the numpy ``LiteEncoder`` starts in a fraction of a second without torch, so short
jobs (a query, ``spladekit inspect``) use it whenever it can run the model; the torch ``SpladeEncoder`` does the
rest (documents in bulk, training, models the numpy path does not know). Both give the fp32 vectors."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import InputError, ModelLoadError
from .loading import model_source


def light_query_encoder(info: Mapping):
    """The numpy encoder of the model an index records (checked by weights hash), or None when it cannot run it."""
    from .lite import load_lite

    try:
        enc = load_lite(model_source(dict(info)))
    except ModelLoadError:
        return None
    return enc if enc.weights_hash == info.get("weights_sha256") else None


def light_or_full(name_or_path: str | None = None):
    """The numpy encoder when it can run ``name_or_path``, else the torch SpladeEncoder; an exported ONNX folder
    runs on onnxruntime (no torch either)."""
    from .lite import load_lite
    from .onnx_encoder import is_onnx_folder, load_onnx

    if is_onnx_folder(name_or_path):
        return load_onnx(name_or_path)  # type: ignore[arg-type]

    try:
        return load_lite(name_or_path)
    except ModelLoadError:
        from .encoder import SpladeEncoder

        return SpladeEncoder.load(name_or_path)


def resolve_model(encoder):
    """What ``create``/``open`` were given as the model, as ``(document encoder or None, light encoder or None)``.

    An encoder object is used for everything. A name, a path or None (the bundled model) loads the numpy
    encoder when it can run the model, so creating an index for precomputed vectors, or searching one, needs no
    torch; the torch encoder then loads on the first text to encode.
    """
    if encoder is None or isinstance(encoder, (str, os.PathLike)):
        from .lite import LiteEncoder

        enc = light_or_full(None if encoder is None else str(encoder))
        return (None, enc) if isinstance(enc, LiteEncoder) else (enc, None)
    if not hasattr(encoder, "info") or not hasattr(encoder, "encode_queries"):
        raise InputError(
            f"encoder must be a SpladeEncoder, a model name or path, or None; got {type(encoder).__name__}"
        )
    return encoder, None


def model_record(enc, long_docs=None) -> dict:
    """The model identity an index records, with how its documents are encoded: the numpy encoder reports mode
    ``fp32``; documents will be encoded by the torch encoder in its default mode, so that is what is recorded.
    ``long_docs`` (a strategy name or ``LongDocs``; None: the encoder's own) is checked against the model."""
    from .lite import LiteEncoder

    info = enc.identity()  # this machine's kernels (``info()["compute"]``) are not the model's identity
    if isinstance(enc, LiteEncoder):
        info["mode"] = "exact"
    info["long_docs"] = enc.document_settings(long_docs).record()
    return info
