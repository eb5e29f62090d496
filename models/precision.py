"""Which floating-point precision the transformers compute in: ``auto`` / ``bf16`` / ``fp32``.

bf16 runs under ``torch.autocast``: the weights (and, in training, the optimiser state) stay
fp32, matmuls and attention run in bf16, and callers take the logits back to fp32 before any
loss or calibration. ``auto`` picks bf16 only where the hardware has native bf16 matmuls: a
CUDA GPU that reports bf16 support, or an x86 CPU with AMX-BF16 or AVX-512-BF16. Elsewhere bf16
is emulated and slower than fp32, so ``auto`` stays fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_HELP = "auto (default): bf16 where the CPU has AMX/AVX512-BF16 or the GPU bf16, else fp32"
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native bf16 matmul flags of this CPU (Linux ``/proc/cpuinfo``); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in _CPU_BF16_FLAGS if f in flags)
    return ()


def bf16_native(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` runs bf16 matmuls natively (faster than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_precision(name: str = "auto", device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16`` where native, else ``fp32``; ``bf16`` / ``fp32`` are kept as asked.

    An explicit ``bf16`` on hardware without native support is allowed (autocast emulates it,
    slowly) but logged, so a slow run is never a mystery.
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if name == "bf16" and not bf16_native(device):
        logger.warning("bf16 requested on %s without native bf16 support: it will be emulated (slow)", device)
    return name


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """``torch.autocast`` to bf16 for ``precision == "bf16"``; a no-op for ``fp32``."""
    if precision == "fp32":
        yield
        return
    if precision != "bf16":
        raise ValueError(f"autocast needs a resolved precision (bf16 or fp32), got {precision!r}")
    device_type = torch.device(device).type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        yield


def default_threads() -> int:
    """Every core this process may run on (the affinity mask, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


__all__ = [
    "PRECISIONS",
    "PRECISION_HELP",
    "autocast",
    "bf16_native",
    "cpu_bf16_flags",
    "default_threads",
    "resolve_precision",
]
