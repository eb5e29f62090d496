"""Frozen bf16 Linear layers in oneDNN's prepacked weight layout, for CPU inference.

``F.linear`` in bf16 on a CPU hands each call to oneDNN, which reorders the weight into its
blocked (AMX / AVX512-BF16) layout on every call and copies the bias into the output before the
product. A weight reordered once, and a GELU applied in the product's epilogue on the fp32
accumulator, save that work: measured on a 2-core Xeon with AMX, a 320 x 384 -> 1536 product
ran 287 -> 175 us, and with its GELU 415 -> 261 us (``docs/benchmarks.md``, session 22). Without
an activation the product is bit-identical to ``F.linear`` in bf16 (tested).

These are the kernels torch's own compiler (inductor) emits for frozen CPU models
(``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``); they take no gradient, so
a :class:`PackedLinear` serves only, never trains. Where this torch build or CPU lacks them,
:func:`onednn_bf16_available` says so and callers keep ``nn.Linear``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

ACTIVATIONS = ("none", "gelu")
# The M the weight is packed for: a hint for oneDNN's choice of layout, not a limit (any batch
# size gives the same result, tested); 64 rows is a served batch of titles.
_PACK_ROWS_HINT = 64


@functools.lru_cache(maxsize=1)
def _kernels_work() -> bool:
    """Whether this torch build runs the prepacked bf16 kernels here (checked once, on a tiny product)."""
    mkldnn = torch.ops.mkldnn
    if not (hasattr(mkldnn, "_reorder_linear_weight") and hasattr(mkldnn, "_linear_pointwise")):
        return False
    if not (torch.backends.mkldnn.is_available() and mkldnn._is_mkldnn_bf16_supported()):
        return False
    try:
        weight = torch.ones(4, 8, dtype=torch.bfloat16)
        packed = mkldnn._reorder_linear_weight(weight, 2)
        out = mkldnn._linear_pointwise(torch.ones(2, 8, dtype=torch.bfloat16), packed, None, "none", [], "")
    except RuntimeError as exc:  # a build whose oneDNN refuses bf16 on this CPU
        logger.info("oneDNN prepacked bf16 Linear unavailable: %s", exc)
        return False
    return bool(torch.equal(out, torch.full((2, 4), 8.0, dtype=torch.bfloat16)))


def onednn_bf16_available(device: torch.device | str = "cpu") -> bool:
    """Whether :class:`PackedLinear` can serve on ``device`` (a CPU whose oneDNN runs bf16)."""
    return torch.device(device).type == "cpu" and _kernels_work()


class PackedLinear(nn.Module):
    """``activation(x @ weight.T + bias)`` in bf16 with the weight prepacked once; inference only.

    Inputs are cast to bf16 (strided ones are read as they are: tested); the output is bf16.
    The plain bf16 weight stays a buffer, so ``state_dict``, copies and pickles work: the opaque
    packed tensor is rebuilt from it when missing.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "none") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if weight.dim() != 2:
            raise ValueError(f"a Linear weight is 2-D (out, in), got shape {tuple(weight.shape)}")
        self.register_buffer("weight", weight.detach().to(torch.bfloat16).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16).contiguous())
        self.activation = activation
        self._packed: torch.Tensor | None = None
        self.packed_weight()  # at load, not in the first request

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "none") -> PackedLinear:
        return cls(linear.weight, linear.bias, activation)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def packed_weight(self) -> torch.Tensor:
        if self._packed is None:
            # .to() after a cast of the whole model (e.g. .float()) may have widened the buffers.
            weight = self.weight.to(torch.bfloat16).contiguous()
            self._packed = torch.ops.mkldnn._reorder_linear_weight(weight, _PACK_ROWS_HINT)
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.bfloat16)
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        algorithm = "none" if self.activation == "gelu" else ""  # "none": the exact (erf) GELU
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight(), bias, self.activation, [], algorithm)

    def _apply(self, fn: Any, recurse: bool = True) -> PackedLinear:
        # .to() / .float() replace the buffers; the packed copy would be stale.
        self._packed = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # Loading copies into the buffers in place; the packed copy would be stale.
        super()._load_from_state_dict(*args, **kwargs)
        self._packed = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_packed"] = None  # oneDNN's opaque layout has no storage to copy or pickle
        return state

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def pack_linear_layers(module: nn.Module, gelu_after: dict[str, str] | None = None) -> int:
    """Replace every ``nn.Linear`` inside ``module`` by a :class:`PackedLinear` in place.

    ``gelu_after`` maps the qualified name of a Linear to that of the exact-GELU module applied
    right after it (a BERT layer's ``intermediate.dense`` -> ``intermediate.intermediate_act_fn``):
    the GELU moves into the product's epilogue and the module becomes an ``nn.Identity``.
    Returns how many layers were packed.
    """
    gelu_after = gelu_after or {}
    targets = [(name, sub) for name, sub in module.named_modules() if isinstance(sub, nn.Linear)]
    for name, linear in targets:
        act = gelu_after.get(name)
        _set_submodule(module, name, PackedLinear.from_linear(linear, "gelu" if act else "none"))
        if act:
            _set_submodule(module, act, nn.Identity())
    return len(targets)


def exact_gelu_followers(module: nn.Module) -> dict[str, str]:
    """For each BERT-style feed-forward in ``module`` (``X.dense`` then ``X.intermediate_act_fn``,
    an exact GELU), the Linear's name -> the activation's name: what :func:`pack_linear_layers` fuses."""
    out: dict[str, str] = {}
    for name, sub in module.named_modules():
        act = getattr(sub, "intermediate_act_fn", None)
        dense = getattr(sub, "dense", None)
        if isinstance(dense, nn.Linear) and is_exact_gelu(act):
            prefix = f"{name}." if name else ""
            out[f"{prefix}dense"] = f"{prefix}intermediate_act_fn"
    return out


def is_exact_gelu(act: Any) -> bool:
    """Whether ``act`` is the erf GELU (transformers' ``GELUActivation`` or ``nn.GELU()``)."""
    if isinstance(act, nn.GELU):
        return act.approximate == "none"
    fn = getattr(act, "act", None)  # transformers.activations.GELUActivation wraps F.gelu
    return type(act).__name__ == "GELUActivation" and fn is nn.functional.gelu


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


__all__ = [
    "PackedLinear",
    "exact_gelu_followers",
    "is_exact_gelu",
    "onednn_bf16_available",
    "pack_linear_layers",
]
