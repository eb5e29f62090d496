"""Models built in one thread while another loads pretrained weights keep real weights.

transformers' ``from_pretrained`` patches ``nn.Module.register_parameter`` and ``torch.nn.init``
process-wide while it builds a model. CI once failed 121 tests after models were loaded in more
than one thread of the test process: the patch was left installed and every later model came out
on the meta device.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from models.bi_encoder import BiEncoder
from models.lea import LeaCrossEncoder

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
ORIGINAL_REGISTER = nn.Module.register_parameter


def _devices(module: nn.Module) -> set[str]:
    return {p.device.type for p in module.parameters()}


@pytest.mark.integration
def test_models_built_during_concurrent_pretrained_loads_have_real_weights():
    stop = threading.Event()
    errors: list[BaseException] = []

    def load_repeatedly() -> None:
        try:
            while not stop.is_set():
                BiEncoder.from_pretrained("minilm")
                LeaCrossEncoder.from_pretrained("minilm", lea=True)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    loaders = [threading.Thread(target=load_repeatedly, daemon=True) for _ in range(2)]
    for thread in loaders:
        thread.start()
    try:
        built = []
        for _ in range(40):
            built.append(LeaCrossEncoder.from_config(TINY, lea=True))
            built.append(BiEncoder.from_config(TINY))
    finally:
        stop.set()
        for thread in loaders:
            thread.join(timeout=120)
    assert not errors, errors
    assert all(_devices(model) == {"cpu"} for model in built)
    # Random init really ran: no weight matrix is left as torch.empty's zeros or garbage.
    assert all(torch.isfinite(p).all() for model in built for p in model.parameters())
    assert nn.Module.register_parameter is ORIGINAL_REGISTER
    fresh = nn.Linear(4, 4)
    assert fresh.weight.device.type == "cpu"
    assert fresh.weight.abs().sum() > 0
