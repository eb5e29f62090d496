"""Where the models run: ``auto`` picks the first CUDA GPU when torch sees one, else the CPU.

The same code serves a 2-core box and a GPU machine; only the ``DEVICE`` setting (or its
``auto`` default) differs. Dynamic int8 quantisation uses CPU kernels, so it is refused on a GPU.
"""

from __future__ import annotations

import re

import torch

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> a torch device that exists on this machine."""
    if not re.match(DEVICE_PATTERN, name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but torch sees no CUDA GPU (this torch: {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def check_quantize_device(quantize: str, device: torch.device) -> None:
    if quantize != "none" and device.type != "cpu":
        raise ValueError(f"{quantize} quantisation runs on the CPU only; set DEVICE=cpu or quantize=none")


__all__ = ["DEVICE_PATTERN", "check_quantize_device", "resolve_device"]
