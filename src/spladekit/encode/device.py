"""Where the torch encoder runs and which CPU kernels it may use: the one place that reads the device and the
CPU's bf16 support (``SPLADEKIT_BF16`` overrides the detection, so an AVX-512 machine can run the AVX2 path)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from ..errors import InputError

# "0": act as if the CPU had no native bf16 (with ATEN_CPU_CAPABILITY=avx2, the path of an AVX2-only laptop);
# "1": use the bf16 screen even where detection says no (slow without native bf16; for tests).
BF16_ENV = "SPLADEKIT_BF16"


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 dot products (AVX512-BF16 or AMX); without them bf16 is slower."""
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    """The CPU flags, read once: the pooling asks for every batch."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"cpu" -> cpu; "auto" -> the first CUDA device when there is one, else cpu; "cuda", "cuda:N",
    "mps" as torch names them, refused in one line when this machine does not have them."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device must be cpu, cuda, cuda:N, mps or auto; got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r}: no CUDA device is available here (torch {torch.__version__})"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {device!r}: MPS is not available here")
    elif dev.type != "cpu":
        raise InputError(f"device must be cpu, cuda, cuda:N, mps or auto; got {device!r}")
    return dev
