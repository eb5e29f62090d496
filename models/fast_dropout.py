"""Dropout whose mask costs a third of ``torch.nn.Dropout``'s on CPU.

Profiling a bf16 training step of the MiniLM cross-encoder on the 2-core Xeon put a third of
the step in ``aten::bernoulli_``: PyTorch draws each dropout mask element with its CPU
Bernoulli sampler, which is slower than the AMX matmuls around it. Here the mask comes from
numpy's PCG64 as 16-bit uniform integers (``p`` quantised to 1/65536), three to four times
faster for the same tensor, and the mask is applied as one multiplication by a 0 / ``1/(1-p)``
tensor (its backward is one more; ``masked_fill`` took twice as long). Statistically it is the
same dropout: each element is dropped independently with probability ``p`` and survivors are
scaled by ``1 / (1 - p)`` (rounded to the input's dtype: 1.109 for p = 0.1 in bf16, 0.16 % low,
below bf16's own rounding of the activations).

Each call seeds its numpy generator from PyTorch's RNG, so runs stay reproducible under
``torch.manual_seed`` and a checkpoint that saves the torch RNG state resumes exactly. Off the
CPU (CUDA's sampler is fast) and in eval mode it is plain ``nn.Dropout``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_LEVELS = 1 << 16


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with a numpy-drawn mask on CPU (same ``p``, same ``.p`` attribute)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        p = float(self.p)
        if not self.training or p == 0.0 or p >= 1.0 or input.device.type != "cpu" or self.inplace:
            return super().forward(input)
        seed = int(torch.randint(0, 2**62, (1,)).item())
        draws = np.random.default_rng(seed).integers(0, _LEVELS, size=tuple(input.shape), dtype=np.uint16)
        # uint16 -> int16 keeps the draws uniform and lets torch compare them (it has no uint16 ops).
        keep = torch.from_numpy(draws.view(np.int16)) >= (round(p * _LEVELS) - _LEVELS // 2)
        return input * (keep.to(input.dtype) * (1.0 / (1.0 - p)))


def use_fast_dropout(module: nn.Module) -> int:
    """Swap every ``nn.Dropout`` inside ``module`` for :class:`FastDropout`; how many were swapped."""
    swapped = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
                swapped += 1
    return swapped


__all__ = ["FastDropout", "use_fast_dropout"]
