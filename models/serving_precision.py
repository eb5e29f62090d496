"""The precision a model serves in: ``auto`` / ``bf16`` / ``fp32`` / ``int8``, resolved and applied.

``bf16`` and ``fp32`` select the autocast of the models' inference (:mod:`models.precision`):
only the matmuls and attention run in bf16. On a CPU whose oneDNN runs bf16, a served bf16
bi-encoder encodes through a fused forward instead (:mod:`models.fused_bert`: one packed Q/K/V
product, the GELU in the feed-forward's epilogue), whose vectors carry their own kind
(``bf16-fused``) because they differ from autocast's in the last bits. Elsewhere it holds its
Linear weights in bf16 (:func:`hold_linear_weights_bf16`): autocast would otherwise cast every
fp32 weight again on every forward, and its vectors stay bit-identical to those stored earlier
under the ``+bf16`` tag. A served bf16 cross-encoder is bf16 throughout (its logits are never
stored), with its Linear layers prepacked for oneDNN where it runs them
(:mod:`models.packed_linear`). ``int8`` is dynamic
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
from models.fused_bert import FusedBertEncoder, fused_bert_unsupported
from models.lea import LeaCrossEncoder
from models.packed_linear import exact_gelu_followers, onednn_bf16_available, pack_linear_layers
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


def serve_bi_encoder(
    model: BiEncoder, precision: str, in_place: bool = False, device: torch.device | str = "cpu", fuse: bool = True
) -> BiEncoder:
    """``model`` ready to encode in a resolved ``precision`` on ``device``.

    bf16 on a CPU whose oneDNN runs bf16 encodes through the fused forward
    (:class:`models.fused_bert.FusedBertEncoder`, BERT backbones) when the model is not shared
    (``in_place`` false); elsewhere through bf16 autocast. ``int8`` quantises a copy unless
    ``in_place`` (a recommender's image fusion holds the very encoder object, so it must keep
    seeing the one that serves). ``in_place`` also keeps bf16 weights fp32: the fusion's own
    layers call the backbone in ways this module does not control. ``fuse=False`` keeps bf16
    autocast (benchmarks time the two paths against each other).
    """
    _check_resolved(precision)
    if precision != "int8":
        model.precision = precision
        model.fused = None
        if precision == "bf16" and not in_place:
            hold_linear_weights_bf16(model.backbone)
            reason = fused_bert_unsupported(model.backbone) if fuse else "fuse=False"
            if reason is None and onednn_bf16_available(device):
                model.fused = FusedBertEncoder(model.backbone)
            else:
                logger.info("bi-encoder %s encodes in bf16 autocast: %s", model.name, reason or "no oneDNN bf16 here")
        return model
    if not in_place:
        return quantize_int8(model)
    quantize_linear_int8(model.backbone)
    model.precision = "fp32"  # int8 kernels take fp32 activations
    model.name = f"{model.name}+int8"
    return model


def serve_cross_encoder(model: LeaCrossEncoder, precision: str, prepack: bool = True) -> LeaCrossEncoder:
    """A freshly loaded cross-encoder set to score in a resolved ``precision`` (int8: in place).

    ``prepack=False`` keeps bf16 ``nn.Linear`` layers (benchmarks time the two against each other).
    """
    _check_resolved(precision)
    if precision == "int8":
        return quantize_cross_encoder_int8(model)
    model.precision = precision
    if precision == "bf16":
        # The whole transformer in bf16 (LayerNorms, residual stream and embeddings too), not
        # only its Linear weights: 12 % faster again, and logits are never stored, so nothing
        # computed earlier needs to match them. The LEA bias tables stay fp32.
        nn.Module.to(model.model, torch.bfloat16)  # PreTrainedModel.to is typed for its own wrapper
        if prepack and onednn_bf16_available(model.device):
            # The transformer body only: the classifier head reads one row per pair.
            body = model.model.base_model
            packed = pack_linear_layers(body, exact_gelu_followers(body))
            logger.info("cross-encoder %s: %d Linear layers prepacked for oneDNN bf16", model.name, packed)
    return model


__all__ = [
    "RESOLVED_PRECISIONS",
    "SERVING_PRECISIONS",
    "hold_linear_weights_bf16",
    "resolve_serving_precision",
    "serve_bi_encoder",
    "serve_cross_encoder",
]
