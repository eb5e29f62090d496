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


PAIRS = [
    ("acme camera x100 black", "Acme X100 camera - black"),
    ("globex phone 12 128gb", "initech stapler red"),
    ("initech stapler red", "Initech red stapler"),
    ("a", "b"),
]


def _tiny_cross_encoder(lea: bool):
    from models.lea import LeaCrossEncoder

    torch.manual_seed(0)
    return LeaCrossEncoder.from_config(
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
        lea=lea,
        max_length=32,
    )


@pytest.mark.parametrize("lea", [True, False])
def test_int8_cross_encoder_keeps_its_logits_and_the_lexical_bias(lea: bool) -> None:
    from models.quantize import quantize_cross_encoder_int8

    model = _tiny_cross_encoder(lea)
    if lea:  # a strong bias, as after training, so switching it off visibly moves the logits
        with torch.no_grad():
            model.lex.proj.mul_(200.0)
            model.lex.gamma.fill_(20.0)
    before = model.predict_logits(PAIRS)
    head = model.model.classifier
    quantized = quantize_cross_encoder_int8(model)
    assert quantized is model, "quantised in place (the LEA context is shared with the attention modules)"
    after = model.predict_logits(PAIRS)
    assert after.shape == before.shape and not np.array_equal(before, after)
    np.testing.assert_allclose(after, before, atol=0.05 * float(np.abs(before).max()) + 1e-3)
    body = model.model.base_model
    assert not any(type(m) is torch.nn.Linear for m in body.modules()), "every body Linear runs in int8"
    assert model.model.classifier is head and type(head) is torch.nn.Linear, "the head stays fp32"
    assert model.name.endswith("+int8")
    if lea:  # the bias still reaches the attention: switching it off changes the logits
        model.use_bias = False
        without = model.predict_logits(PAIRS)
        model.use_bias = True
        assert not np.allclose(without, after)
