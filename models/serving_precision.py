"""The precision a model serves in: ``auto`` / ``bf16`` / ``fp32`` / ``int8``, resolved and applied.

``bf16`` and ``fp32`` select the autocast of the models' inference (:mod:`models.precision`):
only the matmuls and attention run in bf16. A served bf16 bi-encoder holds its Linear weights in
bf16 (:func:`hold_linear_weights_bf16`): autocast would otherwise cast every fp32 weight again on
every forward, which is half the time of one offer's encode, and its vectors stay bit-identical
to those stored earlier under the same ``+bf16`` tag. A served bf16 cross-encoder is bf16
throughout (its logits are never stored), which is faster again. ``int8`` is dynamic
quantisation of the transformer body's Linear layers (:mod:`models.quantize`), CPU only.
``auto`` is bf16 where the device multiplies bf16 natively (AMX/AVX512-BF16, a bf16 GPU), else
fp32. The resolved name is what callers record next to anything the model produced, because
vectors and logits of different precisions differ slightly.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from models.bi_encoder import BiEncoder
from models.devices import check_quantize_device
from models.lea import LeaCrossEncoder
from models.precision import resolve_precision
from models.quantize import quantize_cross_encoder_int8, quantize_int8, quantize_linear_int8

logger = logging.getLogger(__name__)

SERVING_PRECISIONS = ("auto", "bf16", "fp32", "int8")
RESOLVED_PRECISIONS = ("bf16", "fp32", "int8")


def resolve_serving_precision(name: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16`` / ``fp32`` for ``device``; ``int8`` only on the CPU; the rest as asked."""
    if name not in SERVING_PRECISIONS:
        raise ValueError(f"precision must be one of {SERVING_PRECISIONS}, got {name!r}")
    device = torch.device(device)
    if name == "int8":
        check_quantize_device(name, device)
        return name
    return resolve_precision(name, device)


def _check_resolved(precision: str) -> None:
    if precision not in RESOLVED_PRECISIONS:
        raise ValueError(f"a resolved precision is one of {RESOLVED_PRECISIONS}, got {precision!r}")


def hold_linear_weights_bf16(module: nn.Module) -> None:
    """Cast the weight and bias of every ``nn.Linear`` in ``module`` to bf16, once.

    bf16 autocast rounds a Linear's fp32 weight and bias to bf16 on every call, so holding them
    rounded gives the same products without the copies. The module must then run only under bf16
    autocast (a Linear without it would meet fp32 inputs), which is how the serving bi-encoder
    runs; LayerNorms and embeddings keep fp32.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            sub.to(torch.bfloat16)


def serve_bi_encoder(model: BiEncoder, precision: str, in_place: bool = False) -> BiEncoder:
    """``model`` ready to encode in a resolved ``precision``.

    ``int8`` quantises a copy unless ``in_place`` (a recommender's image fusion holds the very
    encoder object, so it must keep seeing the one that serves). ``in_place`` also keeps bf16
    weights fp32: the fusion's own layers call the backbone in ways this module does not control.
    """
    _check_resolved(precision)
    if precision != "int8":
        model.precision = precision
        if precision == "bf16" and not in_place:
            hold_linear_weights_bf16(model.backbone)
        return model
    if not in_place:
        return quantize_int8(model)
    quantize_linear_int8(model.backbone)
    model.precision = "fp32"  # int8 kernels take fp32 activations
    model.name = f"{model.name}+int8"
    return model


def serve_cross_encoder(model: LeaCrossEncoder, precision: str) -> LeaCrossEncoder:
    """A freshly loaded cross-encoder set to score in a resolved ``precision`` (int8: in place)."""
    _check_resolved(precision)
    if precision == "int8":
        return quantize_cross_encoder_int8(model)
    model.precision = precision
    if precision == "bf16":
        # The whole transformer in bf16 (LayerNorms, residual stream and embeddings too), not
        # only its Linear weights: 12 % faster again, and logits are never stored, so nothing
        # computed earlier needs to match them. The LEA bias tables stay fp32.
        nn.Module.to(model.model, torch.bfloat16)  # PreTrainedModel.to is typed for its own wrapper
    return model


__all__ = [
    "RESOLVED_PRECISIONS",
    "SERVING_PRECISIONS",
    "hold_linear_weights_bf16",
    "resolve_serving_precision",
    "serve_bi_encoder",
    "serve_cross_encoder",
]
