"""ViXML fusion (tiny random models): image tokens, masking, decoder template, the generated demo."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from models.vixml import DecoderFusionEncoder, ImageFeatureExtractor, ImageFusionEncoder, image_bank, load_image
from tests.conftest import tiny_bi_encoder
from training.recommend.vixml_demo import generate, run_demo


class _TinyVision(nn.Module):
    """Stands in for EfficientNet-Lite0: extract_features -> (B, 8, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=8, stride=8)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _extractor() -> ImageFeatureExtractor:
    torch.manual_seed(0)
    return ImageFeatureExtractor(_TinyVision(), dim=8)


def test_image_bank_masks_missing_images() -> None:
    from PIL import Image

    red, blue = Image.new("RGB", (30, 20), (255, 0, 0)), Image.new("RGB", (50, 50), (0, 0, 255))
    feats, mask = image_bank([[red], [], [red, blue, red, blue]], _extractor())
    assert feats.shape == (3, 3, 8) and feats.dtype == np.float16
    assert mask.tolist() == [[True, False, False], [False, False, False], [True, True, True]]
    assert not feats[1].any() and not np.allclose(feats[0, 0], feats[2, 1])


def test_load_image_checks_content() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == (4, 4)
    with pytest.raises(Exception):  # noqa: B017 - PIL raises UnidentifiedImageError
        load_image(b"not an image")


def test_encoder_fusion_tokens_and_masking() -> None:
    model = ImageFusionEncoder(tiny_bi_encoder(), image_dim=8).eval()
    texts = ["acme mug model 12", "acme mug model 12"]
    plain = model.encode(texts)
    np.testing.assert_allclose(plain, model.encoder.encode(texts), atol=1e-5)  # no images: plain text
    feats = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    mask = np.array([[True, False, False], [False, False, False]])
    fused = model.encode(texts, feats, mask)
    assert not np.allclose(fused[0], plain[0], atol=1e-4)  # the image changes the embedding
    feats2 = feats.copy()
    feats2[0, 1:] = 123.0  # masked slots must not matter
    np.testing.assert_allclose(model.encode(texts, feats2, mask), fused, atol=1e-5)
    model.train()
    out = model(texts, torch.from_numpy(feats), torch.from_numpy(mask))
    out.sum().backward()
    assert model.project.weight.grad is not None and model.project.weight.grad.abs().sum() > 0


def test_decoder_fusion_template_with_lora() -> None:
    pytest.importorskip("peft")  # the optional `vixml` extra
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    from models.backbones import minilm_path
    from models.vixml import with_lora

    tok = AutoTokenizer.from_pretrained(minilm_path())
    tok.eos_token = "[SEP]"
    config = LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DecoderFusionEncoder(with_lora(LlamaModel(config), r=4), tok, image_dim=8, max_length=8)
    feats = torch.randn(2, 3, 8)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    out = model(["red mug", "a much longer title that will be cut at eight tokens"], feats, mask)
    assert out.shape == (2, 16) and torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    out.sum().backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora" in n for n in trainable) and "project.weight" in trainable
    assert not any("embed_tokens" in n for n in trainable)  # the base weights stay frozen


def test_generated_dataset_hides_colour_in_images() -> None:
    labels, train, test = generate(n_products=3, colours_per_product=2, seed=1)
    assert len(labels) == 6 and len(train) == 18 and len(test) == 12
    assert labels[0].text == labels[1].text  # variants share the title
    assert not any(c in it.text for it in labels + train for c in ("red", "blue", "green", "yellow"))
    a, b = np.asarray(labels[0].images[0], dtype=float), np.asarray(labels[1].images[0], dtype=float)
    assert np.abs(a.mean((0, 1)) - b.mean((0, 1))).max() > 5  # the pictures differ in colour


def test_demo_runs_both_arms() -> None:
    result = run_demo(tiny_bi_encoder, _extractor(), n_products=3, epochs=1, batch_size=8)
    for arm in ("text-only", "text+image"):
        assert 0.0 <= result[arm]["p@1"] <= 1.0 and len(result[arm]["loss_by_epoch"]) == 1
    assert result["text-only"]["p@1"] <= 0.5 + 1e-9  # identical titles: a coin flip at best
