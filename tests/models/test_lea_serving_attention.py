"""LEA's serving attention: the same function as the training path, with the mask in the bias."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from models import lea_attention
from models.lea import LeaCrossEncoder
from models.serving_precision import serve_cross_encoder
from tests.models.test_lea import NO_DROPOUT, PAIRS, TINY, logits, mpnet_model, tiny

# Lengths differ a lot, so every batch holds padded keys the folded mask has to hide.
UNEVEN = [*PAIRS, ("usb cable", "usb-c to usb-a cable 1 m black braided fast charging 60 w")]


def biased(model: LeaCrossEncoder) -> LeaCrossEncoder:
    with torch.no_grad():
        model.lex.proj.normal_(0.0, 1.0)  # a bias strong enough to move the attention
    return model


def both_paths(model: LeaCrossEncoder, batch) -> tuple[torch.Tensor, torch.Tensor]:
    model.serving_attention = False
    reference = logits(model, batch)
    model.serving_attention = True
    return logits(model, batch), reference


@pytest.mark.parametrize(
    "build",
    [
        lambda: tiny(attn="eager"),
        lambda: tiny(attn="sdpa"),
        lambda: tiny(attn="sdpa", layers=[1], heads=[0]),
        mpnet_model,
    ],
    ids=["bert-eager", "bert-sdpa", "bert-one-layer-one-head", "mpnet"],
)
def test_serving_attention_equals_the_training_path_in_fp32(build):
    model = biased(build())
    batch = model.collator(UNEVEN)
    assert not batch.attention_mask.all()  # padding present
    served, reference = both_paths(model, batch)
    torch.testing.assert_close(served, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_long_fp32_pairs_take_the_folded_mask_through_sdpa(attn, monkeypatch):
    """Past FP32_MATMUL_ATTENTION_MAX_TOKENS an fp32 SDPA layer hands the folded bias to SDPA
    (an eager layer, which returns its probabilities, keeps the matmuls); same function."""
    monkeypatch.setattr(lea_attention, "FP32_MATMUL_ATTENTION_MAX_TOKENS", 0)
    sdpa_calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        sdpa_calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(lea_attention.F, "scaled_dot_product_attention", spy)
    model = biased(tiny(attn=attn))
    batch = model.collator(UNEVEN)
    model.serving_attention = False
    reference = logits(model, batch)
    sdpa_calls.clear()
    model.serving_attention = True
    served = logits(model, batch)
    assert len(sdpa_calls) == (len(model.lea_layers) if attn == "sdpa" else 0)
    torch.testing.assert_close(served, reference, atol=1e-5, rtol=1e-5)


def test_sdpa_layers_return_probabilities_only_when_asked():
    model = biased(tiny(attn="sdpa"))
    batch = model.collator(UNEVEN)
    layer = model.model.bert.encoder.layer[0].attention.self
    hidden = torch.randn(len(UNEVEN), batch.input_ids.shape[1], TINY["hidden_size"])
    idx = model.lex.mask_index(batch.lex_idx, batch.lex_cross, model.lex.n_bins)
    model._ctx.set(idx, batch.attention_mask.bool())
    try:
        with torch.no_grad():
            _, none = layer(hidden)
            _, probs = layer(hidden, output_attentions=True)
    finally:
        model._ctx.clear()
    assert none is None
    assert probs.shape == (len(UNEVEN), TINY["num_attention_heads"], *batch.lex_idx.shape[1:])
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    pad = ~batch.attention_mask.bool()[:, None, None, :].expand_as(probs)
    assert (probs[pad] == 0).all()


def test_serving_attention_is_the_path_inference_takes(monkeypatch):
    model = biased(tiny(attn="sdpa"))
    calls = []
    original = lea_attention._LeaAttentionMixin._lea_attend_inference

    def spy(self, *args, **kwargs):
        calls.append(self._lea_layer)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lea_attention._LeaAttentionMixin, "_lea_attend_inference", spy)
    model.predict_logits(UNEVEN)
    assert sorted(set(calls)) == model.lea_layers
    calls.clear()
    model.serving_attention = False
    model.predict_logits(UNEVEN)
    assert calls == []


def test_training_never_takes_the_serving_attention(monkeypatch):
    torch.manual_seed(0)
    model = LeaCrossEncoder.from_config({**TINY, **NO_DROPOUT}, attn_implementation="sdpa")

    def refuse(self, *args, **kwargs):
        raise AssertionError("the serving attention ran in training")

    monkeypatch.setattr(lea_attention._LeaAttentionMixin, "_lea_attend_inference", refuse)
    model.train()
    model.batch_forward(model.collator(UNEVEN)).sum().backward()
    assert model.lex.proj.grad.abs().sum() > 0 and model.lex.gamma_set.all()


def test_a_pair_scores_the_same_alone_and_beside_longer_pairs():
    """Padding keys are masked by the folded bias: a short pair's logit ignores its batch."""
    model = biased(tiny(attn="sdpa"))
    together = model.predict_logits(UNEVEN, batch_size=len(UNEVEN))
    alone = [model.predict_logits([pair])[0] for pair in UNEVEN]
    torch.testing.assert_close(torch.tensor(together), torch.tensor(alone), atol=1e-5, rtol=1e-5)


def test_inference_bias_is_the_bias_with_the_mask_folded_in():
    model = biased(tiny(attn="sdpa"))
    batch = model.collator(UNEVEN)
    lex = model.lex
    idx = lex.mask_index(batch.lex_idx, batch.lex_cross, lex.n_bins)
    ctx = lea_attention.LeaContext(lex)
    ctx.set(idx, batch.attention_mask.bool())
    for dtype in (torch.float32, torch.bfloat16):
        for layer in model.lea_layers:
            folded = lex.inference_bias(layer, ctx.key_masked_index(), dtype)
            assert folded.dtype == dtype
            pad = ~batch.attention_mask.bool()[:, None, None, :].expand_as(folded)
            assert (folded[pad] == torch.finfo(dtype).min).all()
            expected = lex.bias(layer, idx).to(dtype)
            assert torch.equal(folded[~pad], expected[~pad])
    assert ctx.key_masked_index() is ctx.key_masked_index()  # built once per forward
    ctx.clear()
    assert ctx.idx is None


def test_bf16_serving_attention_stays_within_bf16_rounding_of_the_reference():
    model = serve_cross_encoder(biased(tiny(attn="sdpa")), "bf16")
    served = torch.tensor(model.predict_logits(UNEVEN))
    model.serving_attention = False
    reference = torch.tensor(model.predict_logits(UNEVEN))
    assert torch.isfinite(served).all()
    torch.testing.assert_close(served, reference, atol=5e-2, rtol=2e-2)


def test_the_setting_survives_copies_and_pickles():
    model = tiny()
    model.serving_attention = False
    assert copy.deepcopy(model).serving_attention is False
    assert pickle.loads(pickle.dumps(model)).serving_attention is False
    vanilla = tiny(lea=False)
    vanilla.serving_attention = True  # nothing to switch without LEA layers
    assert vanilla.serving_attention is False
