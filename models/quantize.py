"""Dynamic int8 quantisation of the encoders' linear layers for CPU inference.

On a small CPU box a transformer's time is almost all in the Linear layers (Q/K/V/O and the
feed-forward block), for the bi-encoder and the cross-encoder alike. Dynamic quantisation
stores their weights as int8 and quantises activations per batch, so those matmuls run on int8
kernels (fbgemm / onednn) with no calibration data. Embeddings, LayerNorm and attention softmax
stay in fp32. Serving only: a quantised model is not trained.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import TypeVar

import torch

from models.bi_encoder import BiEncoder
from models.construction import builds_models
from models.lea import LeaCrossEncoder

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8")

_M = TypeVar("_M", bound=torch.nn.Module)


def _select_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    for engine in ("fbgemm", "x86", "onednn", "qnnpack"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    return str(torch.backends.quantized.engine)


@builds_models
def quantize_linear_int8(module: _M) -> _M:
    """``module`` with every ``nn.Linear`` swapped for a dynamic int8 one, in place."""
    _select_engine()
    module.eval()
    # torch 2.13 flags the eager quantisation API as deprecated; it is still the supported path
    # for dynamic int8 on CPU in this version.
    warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*", category=UserWarning)
    # Per-output-channel weight scales: per-tensor scales moved MiniLM's embeddings to a mean
    # cosine of 0.95 with the fp32 ones, per-channel to 0.98.
    torch.ao.quantization.quantize_dynamic(
        module, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, inplace=True
    )
    return module  # inplace=True: quantize_dynamic swapped the layers inside `module` itself


def quantize_int8(model: BiEncoder) -> BiEncoder:
    """A copy of ``model`` whose ``nn.Linear`` layers are dynamically quantised to int8."""
    quantized = copy.deepcopy(model)
    quantized.eval()
    quantized.backbone = quantize_linear_int8(quantized.backbone)
    quantized.precision = "fp32"  # int8 kernels take fp32 activations, never autocast bf16 ones
    quantized.name = f"{model.name}+int8"
    logger.info("quantised %s to dynamic int8 (engine %s)", model.name, torch.backends.quantized.engine)
    return quantized


def quantize_cross_encoder_int8(model: LeaCrossEncoder) -> LeaCrossEncoder:
    """``model`` with its transformer body's ``nn.Linear`` layers in dynamic int8, in place.

    In place because the LEA attention modules share one lexical context with the model, which
    a deep copy would have to re-wire; callers quantise a freshly loaded model. The one-logit
    head stays fp32: its logit feeds the calibrator, and it is a single dot product.
    The lexical bias lives outside the body and is untouched.
    """
    quantize_linear_int8(model.model.base_model)
    model.precision = "fp32"  # int8 kernels take fp32 activations, never autocast bf16 ones
    model.name = f"{model.name}+int8"
    logger.info("quantised cross-encoder %s to dynamic int8 (engine %s)", model.name, torch.backends.quantized.engine)
    return model


def _check_mode(mode: str) -> None:
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {mode!r}")


def apply_quantization(model: BiEncoder, mode: str) -> BiEncoder:
    """``mode`` applied to a bi-encoder (``int8``: a quantised copy)."""
    _check_mode(mode)
    return model if mode == "none" else quantize_int8(model)


def apply_cross_encoder_quantization(model: LeaCrossEncoder, mode: str) -> LeaCrossEncoder:
    """``mode`` applied to a freshly loaded cross-encoder (``int8``: in place, see above)."""
    _check_mode(mode)
    return model if mode == "none" else quantize_cross_encoder_int8(model)
