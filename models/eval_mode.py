"""Switching a model to eval mode for inference without paying for it on every call."""

from __future__ import annotations

from torch import nn


def enter_eval(module: nn.Module) -> bool:
    """Put ``module`` and all its submodules in eval mode; returns ``module.training`` from before,
    for the caller to restore with ``module.train()``.

    ``nn.Module.eval()`` sets the flag on every submodule through ``nn.Module.__setattr__``:
    0.5 ms for a MiniLM, a twentieth of one offer's encode. Serving models are already in eval
    mode, so only reading the flags is paid there.
    """
    was_training = module.training
    if any(sub.training for sub in module.modules()):
        module.eval()
    return was_training
