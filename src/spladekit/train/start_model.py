"""The model a run starts from: a local folder or the bundled splade-tiny as the encoder loads them, or a hub id
fetched with its PyTorch weights too (base checkpoints such as ``prajjwal1/bert-mini`` ship only
``pytorch_model.bin``, which the encoder's own download, made for SPLADE models, leaves out)."""

from __future__ import annotations

from pathlib import Path

from ..encode.loading import BUNDLED_NAME, _looks_like_hub_id
from ..errors import ModelLoadError

# what a masked-LM folder needs; *.bin only as pytorch_model.bin (not optimizer or training-args pickles)
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model.bin"]


def start_model(name: str | None) -> str | None:
    """``name`` unchanged unless it is a hub id with no local folder of that name: then the local snapshot."""
    if (
        name is None
        or name == BUNDLED_NAME
        or Path(name).expanduser().exists()
        or not _looks_like_hub_id(name)
    ):
        return name
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, allow_patterns=_PATTERNS)
    except Exception as e:  # noqa: BLE001 - offline, unknown id: one line, the same remedy
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"cannot fetch start model {name!r} from the Hugging Face hub ({reason}); offline, set `model` to a "
            "local masked-LM folder"
        ) from None
