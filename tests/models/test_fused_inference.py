"""Prepacked oneDNN bf16 Linear layers and the fused BERT forward of the served bi-encoder.

The kernels need a CPU whose oneDNN runs bf16 (AMX / AVX512-BF16, or AVX-512 emulation); where it
does not, the tests that run them are skipped and serving keeps autocast (tested here too).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from models.bi_encoder import BiEncoder
from models.fused_bert import FusedBertEncoder, fused_bert_unsupported
from models.lea import LeaCrossEncoder
from models.packed_linear import (
    PackedLinear,
    exact_gelu_followers,
    is_exact_gelu,
    onednn_bf16_available,
    pack_linear_layers,
)
from models.pooling import mean_pool
from models.serving_precision import serve_bi_encoder, serve_cross_encoder
from tests.conftest import TINY_CONFIG

LOUD = {**TINY_CONFIG, "initializer_range": 0.2}
TEXTS = [
    "acme camera x100 black",
    "globex phone 12 128gb",
    "a",
    "Sony WH-1000XM4 wireless noise cancelling over-ear headphones, black, with carrying case",
    "initech stapler red",
]
needs_kernels = pytest.mark.skipif(not onednn_bf16_available(), reason="this CPU's oneDNN does not run bf16")


def _linear(n_in: int = 48, n_out: int = 80, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(n_in, n_out, bias=bias)


@needs_kernels
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_is_bit_identical_to_bf16_linear(bias: bool) -> None:
    linear = _linear(bias=bias)
    packed = PackedLinear.from_linear(linear)
    ref = linear.to(torch.bfloat16)
    for shape in [(1, 48), (7, 48), (130, 48), (3, 5, 48)]:
        x = torch.randn(*shape).to(torch.bfloat16)
        out = packed(x)
        assert out.dtype == torch.bfloat16 and out.shape == (*shape[:-1], 80)
        assert torch.equal(out, ref(x))


@needs_kernels
def test_packed_linear_reads_strided_and_fp32_inputs_correctly() -> None:
    """A transposed input (as attention layouts produce) gives what its contiguous copy gives."""
    linear = _linear()
    packed = PackedLinear.from_linear(linear)
    for x in (torch.randn(48, 6).t(), torch.randn(7, 3, 48).transpose(0, 1)):  # (6, 48), (3, 7, 48)
        x = x.to(torch.bfloat16)
        assert not x.is_contiguous()
        assert torch.equal(packed(x), packed(x.contiguous()))
        assert torch.equal(packed(x), linear.to(torch.bfloat16)(x.contiguous()))
    xf = torch.randn(4, 48)
    assert torch.equal(packed(xf), packed(xf.to(torch.bfloat16)))


@needs_kernels
def test_fused_gelu_is_the_exact_gelu_of_the_product() -> None:
    linear = _linear()
    packed = PackedLinear.from_linear(linear, activation="gelu")
    x = torch.randn(33, 48).to(torch.bfloat16)
    w, b = linear.weight.detach().to(torch.bfloat16).float(), linear.bias.detach().to(torch.bfloat16).float()
    product = nn.functional.linear(x.float(), w, b)
    got = packed(x).float()
    # One bf16 rounding of the fp32 result (relative 2^-8): the exact GELU, not its tanh form.
    np.testing.assert_allclose(got.numpy(), nn.functional.gelu(product).numpy(), rtol=2**-7, atol=1e-2)
    assert not torch.allclose(got, product.to(torch.bfloat16).float(), atol=1e-2)  # it did apply a GELU


def test_packed_linear_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="activation"):
        PackedLinear(torch.zeros(4, 4), activation="relu")
    with pytest.raises(ValueError, match="2-D"):
        PackedLinear(torch.zeros(4))


@needs_kernels
def test_packed_linear_survives_copies_pickles_state_dicts_and_moves() -> None:
    packed = PackedLinear.from_linear(_linear(), activation="gelu")
    x = torch.randn(5, 48).to(torch.bfloat16)
    want = packed(x)
    assert torch.equal(copy.deepcopy(packed)(x), want)
    assert torch.equal(pickle.loads(pickle.dumps(packed))(x), want)
    fresh = PackedLinear(torch.zeros(80, 48), torch.zeros(80), activation="gelu")
    fresh.load_state_dict(packed.state_dict())
    assert torch.equal(fresh(x), want)
    packed.weight.data.zero_()
    packed.float()  # a cast or a move re-packs from the buffers (now zero): the stale copy is gone
    only_bias = nn.functional.gelu(packed.bias.float()).expand(5, 80)
    np.testing.assert_allclose(packed(x).float().numpy(), only_bias.numpy(), rtol=2**-7, atol=1e-3)


def test_gelu_followers_are_found_only_for_the_exact_gelu() -> None:
    bert = BiEncoder.from_config(TINY_CONFIG, max_length=16).backbone
    followers = exact_gelu_followers(bert)
    assert followers == {
        f"encoder.layer.{i}.intermediate.dense": f"encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)
    }
    assert is_exact_gelu(nn.GELU()) and not is_exact_gelu(nn.GELU(approximate="tanh")) and not is_exact_gelu(nn.ReLU())
    tanh_bert = BiEncoder.from_config({**TINY_CONFIG, "hidden_act": "gelu_new"}, max_length=16).backbone
    assert exact_gelu_followers(tanh_bert) == {}
    assert "activation" in (fused_bert_unsupported(tanh_bert) or "")


@needs_kernels
def test_pack_linear_layers_keeps_a_bert_forward_and_fuses_its_gelu() -> None:
    torch.manual_seed(0)
    bert = BiEncoder.from_config(LOUD, max_length=16).backbone.eval()
    nn.Module.to(bert, torch.bfloat16)
    batch = BiEncoder.from_config(LOUD, max_length=16).tokenize(TEXTS)
    with torch.inference_mode():
        want = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state.float()
        n = pack_linear_layers(bert, exact_gelu_followers(bert))
        got = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state.float()
    assert n == 2 * 6 + 1  # q, k, v, attention out, feed-forward in and out per layer, the pooler
    assert not any(isinstance(m, nn.Linear) for m in bert.modules())
    assert all(isinstance(layer.intermediate.intermediate_act_fn, nn.Identity) for layer in bert.encoder.layer)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=0.1)


def _fp32_vectors(model: BiEncoder) -> np.ndarray:
    return model.encode(TEXTS, batch_size=8)


@needs_kernels
def test_fused_bert_matches_the_fp32_encoder_and_serves_as_bf16_fused() -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_config(LOUD, max_length=32)
    fp32 = _fp32_vectors(model)
    serve_bi_encoder(model, "bf16")
    assert isinstance(model.fused, FusedBertEncoder) and model.vector_kind == "bf16-fused"
    fused = model.encode(TEXTS, batch_size=8)
    assert fused.dtype == np.float32 and fused.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    cosines = (fused * fp32).sum(axis=1)
    assert cosines.min() > 0.995, cosines
    model.fused = None  # the autocast path: close too, yet not the same vectors
    autocast = model.encode(TEXTS, batch_size=8)
    assert (autocast * fused).sum(axis=1).min() > 0.995 and not np.array_equal(autocast, fused)


@needs_kernels
def test_fused_bert_masks_padding() -> None:
    """A text scores the same alone (no padding, no mask) and beside a much longer text."""
    torch.manual_seed(0)
    model = serve_bi_encoder(BiEncoder.from_config(LOUD, max_length=32), "bf16")
    assert model.fused is not None
    alone = np.stack([model.encode([t], batch_size=1)[0] for t in TEXTS])
    together = model.encode(TEXTS, batch_size=8)
    np.testing.assert_allclose(together, alone, atol=2e-2)
    # Against the same batch with the mask dropped: padding would then change the short texts.
    batch = model.tokenize(TEXTS)
    with torch.inference_mode():
        unmasked = model.fused.layers[0](model.fused.embeddings(input_ids=batch["input_ids"]).float(), None)
        masked = model.fused.layers[0](
            model.fused.embeddings(input_ids=batch["input_ids"]).float(),
            batch["attention_mask"].bool()[:, None, None, :],
        )
    short = 2  # "a": mostly padding
    assert not torch.allclose(unmasked[short, :3], masked[short, :3], atol=1e-3)


@needs_kernels
def test_fused_hidden_states_follow_the_hugging_face_forward() -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_config(LOUD, max_length=32)
    batch = model.tokenize(TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.inference_mode():
        want = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        fused = FusedBertEncoder(model.backbone)
        got = fused(ids, mask)
        assert torch.equal(fused.embed(ids), model.backbone.embeddings(input_ids=ids))
    assert got.dtype == torch.float32
    pooled = nn.functional.cosine_similarity(mean_pool(got, mask), mean_pool(want, mask))
    assert pooled.min() > 0.995
    real = mask.bool()
    np.testing.assert_allclose(got[real].numpy(), want[real].numpy(), atol=0.15)


def test_serving_falls_back_to_autocast_where_the_fused_forward_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    tanh = serve_bi_encoder(BiEncoder.from_config({**TINY_CONFIG, "hidden_act": "gelu_new"}, max_length=16), "bf16")
    assert tanh.fused is None and tanh.vector_kind == "bf16"
    shared = serve_bi_encoder(BiEncoder.from_config(TINY_CONFIG, max_length=16), "bf16", in_place=True)
    assert shared.fused is None and shared.vector_kind == "bf16"
    assert not onednn_bf16_available("cuda")  # a GPU keeps autocast
    import models.serving_precision as serving

    monkeypatch.setattr(serving, "onednn_bf16_available", lambda device="cpu": False)
    plain = serve_bi_encoder(BiEncoder.from_config(TINY_CONFIG, max_length=16), "bf16")
    assert plain.fused is None and plain.vector_kind == "bf16"
    again = serve_bi_encoder(plain, "fp32")
    assert again.fused is None and again.vector_kind == "fp32"
    with pytest.raises(ValueError, match="cannot fuse"):
        FusedBertEncoder(nn.Linear(2, 2))


@needs_kernels
def test_a_served_bf16_cross_encoder_is_prepacked_and_keeps_its_logits() -> None:
    torch.manual_seed(0)
    cross = LeaCrossEncoder.from_config(LOUD, lea=True, max_length=32)
    pairs = [(t, TEXTS[(i + 1) % len(TEXTS)]) for i, t in enumerate(TEXTS)]
    plain = copy.deepcopy(cross)
    plain.precision = "bf16"
    nn.Module.to(plain.model, torch.bfloat16)  # what serving did before packing
    want = plain.predict_logits(pairs)
    serve_cross_encoder(cross, "bf16")
    body = cross.model.base_model
    assert not any(isinstance(m, nn.Linear) for m in body.modules())
    assert isinstance(body.encoder.layer[0].intermediate.dense, PackedLinear)
    got = cross.predict_logits(pairs)
    np.testing.assert_allclose(got, want, atol=0.1)
    assert np.array_equal(copy.deepcopy(cross).predict_logits(pairs), got)


@pytest.mark.parametrize("max_length", [8, 64])
def test_inference_tokenising_equals_the_tokenizer_call(max_length: int) -> None:
    model = BiEncoder.from_config(TINY_CONFIG, max_length=max_length)
    texts = [*TEXTS, "", " ", "Ünïcödé 😀 title", "x " * 200, "a b"]
    ids, mask = model.tokenize_ids(texts)
    want = model.tokenize(texts)
    assert torch.equal(ids, want["input_ids"]) and torch.equal(mask, want["attention_mask"])
    assert ids.dtype == mask.dtype == torch.long
    model.max_length = 16  # the cached backend follows a changed length
    assert torch.equal(model.tokenize_ids(texts)[0], model.tokenize(texts)["input_ids"])
    assert torch.equal(pickle.loads(pickle.dumps(model)).tokenize_ids(texts)[0], model.tokenize_ids(texts)[0])


def test_inference_tokenising_pads_to_a_multiple_when_asked() -> None:
    model = BiEncoder.from_config(TINY_CONFIG, max_length=64)
    ids, mask = model.tokenize_ids(TEXTS, multiple_of=8)
    want = model.tokenize(TEXTS)
    n = want["input_ids"].shape[1]
    assert ids.shape[1] % 8 == 0 and n <= ids.shape[1] < n + 8
    assert torch.equal(ids[:, :n], want["input_ids"]) and torch.equal(mask[:, :n], want["attention_mask"])
    assert not mask[:, n:].any() and (ids[:, n:] == model.tokenizer.pad_token_id).all()


@needs_kernels
def test_fused_vectors_do_not_depend_on_extra_padding() -> None:
    torch.manual_seed(0)
    model = serve_bi_encoder(BiEncoder.from_config(LOUD, max_length=64), "bf16")
    ids, mask = model.tokenize_ids(TEXTS)
    wide_ids, wide_mask = model.tokenize_ids(TEXTS, multiple_of=32)
    with torch.inference_mode():
        narrow, wide = model.embed_batch(ids, mask), model.embed_batch(wide_ids, wide_mask)
    np.testing.assert_allclose(wide.numpy(), narrow.numpy(), atol=2e-2)
