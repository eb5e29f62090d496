"""Serving precision: ``auto`` follows the CPU's bf16 capability, and bf16 stays close to fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.precision as precision_module
from models.bi_encoder import BiEncoder
from models.lea import LeaCrossEncoder
from models.serving_precision import resolve_serving_precision, serve_bi_encoder, serve_cross_encoder
from tests.conftest import TINY_CONFIG

# initializer_range 0.2 (BERT's is 0.02): with tiny random weights the transformer layers barely
# move the embeddings, and bf16 rounding in them would not be visible at all.
LOUD = {**TINY_CONFIG, "initializer_range": 0.2}
TEXTS = [
    "acme camera x100 black",
    "globex phone 12 128gb",
    "initech stapler red",
    "a",
    "Sony WH-1000XM4 wireless noise cancelling over-ear headphones, black",
]
PAIRS = [(t, TEXTS[(i + 1) % len(TEXTS)]) for i, t in enumerate(TEXTS)] + [(t, t.upper()) for t in TEXTS]


def test_auto_is_bf16_exactly_where_the_cpu_multiplies_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    native = bool(precision_module.cpu_bf16_flags())  # this machine's real probe
    assert resolve_serving_precision("auto", "cpu") == ("bf16" if native else "fp32")
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert resolve_serving_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())
    assert resolve_serving_precision("auto", "cpu") == "fp32"
    # An explicit choice is kept even without native support (emulated, with a warning).
    assert resolve_serving_precision("bf16", "cpu") == "bf16"
    assert resolve_serving_precision("fp32", "cpu") == "fp32"
    assert resolve_serving_precision("int8", "cpu") == "int8"


def test_bad_precisions_are_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_serving_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_serving_precision("int8", torch.device("cuda"))
    with pytest.raises(ValueError, match="resolved precision"):
        serve_bi_encoder(BiEncoder.from_config(TINY_CONFIG, max_length=32), "auto")


def test_bf16_embeddings_are_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_config(LOUD, max_length=32)
    fp32 = model.encode(TEXTS, batch_size=2)
    assert serve_bi_encoder(model, "bf16") is model and model.precision == "bf16"
    bf16 = model.encode(TEXTS, batch_size=2)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(fp32 * bf16, axis=1))) > 0.99
    assert not np.array_equal(fp32, bf16), "encode() really ran under bf16 autocast"


def test_bf16_cross_encoder_logits_are_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = LeaCrossEncoder.from_config(LOUD, lea=True, max_length=32)
    fp32 = model.predict_logits(PAIRS, batch_size=3)
    assert serve_cross_encoder(model, "bf16") is model and model.precision == "bf16"
    bf16 = model.predict_logits(PAIRS, batch_size=3)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.03)
    assert not np.array_equal(fp32, bf16), "predict_logits() really ran under bf16 autocast"


def test_int8_in_place_keeps_the_object_a_copy_otherwise() -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_config(TINY_CONFIG, max_length=32)
    copy = serve_bi_encoder(model, "int8")
    assert copy is not model and not any("quantized" in type(m).__module__ for m in model.backbone.modules())
    same = serve_bi_encoder(model, "int8", in_place=True)
    assert same is model and model.precision == "fp32"
    assert any("quantized" in type(m).__module__ for m in model.backbone.modules())


def test_served_bf16_bi_encoder_holds_linear_weights_in_bf16_with_identical_vectors() -> None:
    """Holding the Linear weights rounded once must give exactly what autocast gives when it
    rounds them on every call (so vectors tagged ``+bf16`` stay comparable across versions)."""
    torch.manual_seed(0)
    encoder = BiEncoder.from_config(LOUD, max_length=32)
    encoder.precision = "bf16"  # autocast alone, fp32 weights
    autocast_only = encoder.encode(TEXTS, batch_size=2)
    serve_bi_encoder(encoder, "bf16")
    linears = [m for m in encoder.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert all(m.weight.dtype == torch.float32 for m in encoder.backbone.modules() if isinstance(m, torch.nn.LayerNorm))
    encoder.fused = None  # the autocast path (where the fused forward serves, it is the fallback)
    assert encoder.vector_kind == "bf16"
    np.testing.assert_array_equal(encoder.encode(TEXTS, batch_size=2), autocast_only)


def test_served_bf16_cross_encoder_is_bf16_throughout_and_close_to_autocast() -> None:
    """Logits are never stored, so the cross-encoder serves wholly in bf16 (LayerNorms and the
    residual stream too): close to autocast alone, with the LEA bias tables kept fp32."""
    torch.manual_seed(0)
    cross = LeaCrossEncoder.from_config(LOUD, lea=True, max_length=32)
    cross.precision = "bf16"
    autocast_logits = cross.predict_logits(PAIRS, batch_size=3)
    serve_cross_encoder(cross, "bf16")
    assert {p.dtype for p in cross.model.parameters()} == {torch.bfloat16}
    assert cross.lex is not None and all(p.dtype == torch.float32 for p in cross.lex.parameters())
    served = cross.predict_logits(PAIRS, batch_size=3)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, autocast_logits, atol=0.05)
    assert cross.explain(PAIRS[0], top=2) is not None  # explanations read the fp32 bias tables


def test_in_place_bf16_keeps_fp32_weights() -> None:
    model = BiEncoder.from_config(TINY_CONFIG, max_length=32)
    assert serve_bi_encoder(model, "bf16", in_place=True) is model and model.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in model.parameters())
