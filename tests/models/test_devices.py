from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from models.devices import check_quantize_device, resolve_device


def test_auto_follows_what_torch_sees() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_missing_gpu_is_a_clear_error() -> None:
    # Runs on both kinds of machine: without a GPU every cuda device is missing, with one a
    # device index past the visible GPUs is.
    missing = "no CUDA GPU" if not torch.cuda.is_available() else r"GPU\(s\) are visible"
    with pytest.raises(ValueError, match=missing):
        resolve_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cuda:", "CPU", ""])
def test_unknown_device_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(bad)


def test_int8_only_on_cpu() -> None:
    check_quantize_device("int8", torch.device("cpu"))
    check_quantize_device("none", torch.device("cuda"))
    with pytest.raises(ValueError, match="CPU only"):
        check_quantize_device("int8", torch.device("cuda"))


def test_setting_is_validated() -> None:
    from app.core.config import Settings

    assert Settings(_env_file=None, device="cuda:0").device == "cuda:0"  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="device"):
        Settings(_env_file=None, device="gpu")  # type: ignore[call-arg]


def test_encoder_loads_on_the_requested_device(tiny_encoder_dir) -> None:
    from app.pipeline.encoder import Encoder

    enc = Encoder.load(str(tiny_encoder_dir), max_length=32, device="cpu")
    assert enc.model.device == torch.device("cpu")
    assert enc.encode(["acme camera"]).shape == (1, enc.dim)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Encoder.load(str(tiny_encoder_dir), max_length=32, device="cuda")
