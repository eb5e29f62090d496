from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bi_encoder import BiEncoder
from models.quantize import apply_quantization
from tests.conftest import TINY_CONFIG

TEXTS = ["acme camera x100 black", "globex phone 12 128gb", "initech stapler red", "a"]


def test_int8_keeps_the_embeddings_and_leaves_the_original_alone() -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_config(TINY_CONFIG, max_length=32)
    before = model.encode(TEXTS)
    quantized = apply_quantization(model, "int8")
    after = quantized.encode(TEXTS)
    assert after.shape == before.shape
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(before * after, axis=1))) > 0.95
    assert not np.array_equal(before, after), "the linear layers really run in int8"
    assert any("quantized" in type(m).__module__ for m in quantized.backbone.modules())
    np.testing.assert_array_equal(model.encode(TEXTS), before)  # the fp32 model is untouched
    assert apply_quantization(model, "none") is model
    with pytest.raises(ValueError, match="int8"):
        apply_quantization(model, "int4")


def test_quantised_encoder_tags_its_vectors_apart(tiny_encoder_dir) -> None:
    from app.pipeline.encoder import Encoder

    plain = Encoder.load(str(tiny_encoder_dir), max_length=32)
    int8 = Encoder.load(str(tiny_encoder_dir), max_length=32, quantize="int8")
    assert int8.model_id == plain.model_id + "+int8"
    assert int8.encode(TEXTS).shape == plain.encode(TEXTS).shape
