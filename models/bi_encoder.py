"""Bi-encoder: a transformer, mean pooling over real tokens, L2 normalisation.

The same module embeds catalogue products for the FAISS index and incoming offers at query
time, and is the model Block-SCL training fine-tunes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.artefacts import assert_safe_weights
from models.backbones import backbone_path
from models.batch_shapes import pad_multiple
from models.construction import builds_models
from models.eval_mode import enter_eval
from models.fused_bert import FusedBertEncoder
from models.pooling import mean_pool
from models.precision import autocast

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 64


class BiEncoder(nn.Module):
    """Mean-pooled, L2-normalised sentence encoder over any HF encoder backbone."""

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = DEFAULT_MAX_LENGTH,
        name: str = "custom",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name
        # Inference precision of encode() (models.precision); training autocasts itself.
        self.precision = "fp32"
        # A fused bf16 inference forward (models.fused_bert), set by serving on a CPU that runs
        # it; encode() then uses it instead of the autocast backbone.
        self.fused: FusedBertEncoder | None = None
        # The Rust tokenizer set up for inference (tokenize_ids), with the max length it was set for.
        self._backend: tuple[int, Any] | None = None

    @classmethod
    @builds_models
    def from_pretrained(
        cls, name_or_path: str | Path, max_length: int = DEFAULT_MAX_LENGTH, attn_implementation: str | None = None
    ) -> BiEncoder:
        """Load `minilm`, `mpnet` or a saved folder; never contacts a hub.

        ``attn_implementation="eager"`` for training on CPU: its attention dropout is a module
        that :func:`models.fast_dropout.use_fast_dropout` can swap (SDPA draws its own mask).
        """
        path = backbone_path(str(name_or_path))
        assert_safe_weights(path)  # safetensors and JSON only: a pickled file refuses the folder
        tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        backbone = AutoModel.from_pretrained(path, use_safetensors=True, **kwargs)
        model = cls(backbone, tokenizer, max_length=max_length, name=str(name_or_path))
        model.eval()
        return model

    @classmethod
    @builds_models
    def from_config(
        cls, config: dict, tokenizer_from: str | Path = "minilm", max_length: int = DEFAULT_MAX_LENGTH
    ) -> BiEncoder:
        """A randomly initialised model from a config dict (tiny models for tests)."""
        tok_path = backbone_path(str(tokenizer_from))
        tokenizer = AutoTokenizer.from_pretrained(tok_path)
        base = AutoConfig.from_pretrained(tok_path)
        for key, value in config.items():
            setattr(base, key, value)
        backbone = AutoModel.from_config(base)
        model = cls(backbone, tokenizer, max_length=max_length, name="random-init")
        model.eval()
        return model

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def tokenize_ids(self, texts: Sequence[str], multiple_of: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` exactly as :meth:`tokenize` gives them, faster.

        A fast tokenizer's Rust backend is called directly, set once for this encoder's truncation
        and padding: the transformers wrapper around it cost 60 % of the tokenising time of a
        batch of titles (26 of 44 ms per 1,000). Slow tokenizers take :meth:`tokenize`.
        ``multiple_of`` pads the batch further, to a multiple of that many tokens.
        """
        backend = self._backend_tokenizer()
        if backend is None:
            batch = self.tokenize(texts)
            ids, mask = batch["input_ids"], batch["attention_mask"]
        else:
            encodings = backend.encode_batch(list(texts))
            ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        extra = -ids.shape[1] % multiple_of
        if extra:
            pad_id = self.tokenizer.pad_token_id or 0
            ids = nn.functional.pad(ids, (0, extra), value=pad_id)
            mask = nn.functional.pad(mask, (0, extra), value=0)
        return ids, mask

    def _backend_tokenizer(self) -> Any | None:
        if self._backend is None or self._backend[0] != self.max_length:
            tok, backend = self.tokenizer, None
            if getattr(tok, "is_fast", False) and tok.padding_side == "right" and tok.truncation_side == "right":
                backend = copy.deepcopy(tok.backend_tokenizer)  # the wrapper re-sets the shared one per call
                backend.enable_truncation(max_length=self.max_length)
                backend.enable_padding(
                    pad_id=tok.pad_token_id, pad_token=tok.pad_token, pad_type_id=tok.pad_token_type_id
                )
            self._backend = (self.max_length, backend)
        return self._backend[1]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        kwargs.pop("token_type_ids", None)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        return nn.functional.normalize(pooled, p=2, dim=-1)

    @property
    def vector_kind(self) -> str:
        """How encode() computes vectors: ``fp32``, ``bf16`` (autocast) or ``bf16-fused``.

        Each kind's vectors differ slightly from the others', so stored vectors are tagged with it.
        """
        if self.fused is not None:
            return "bf16-fused"
        return self.precision

    def embed_batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit vectors (fp32) of one tokenised batch, the way encode() computes them."""
        if self.fused is not None:
            hidden = self.fused(input_ids, attention_mask)
            return nn.functional.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1)
        with autocast(self.precision, input_ids.device):
            return self.forward(input_ids, attention_mask).float()

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts as float32 unit vectors, shape (n, dim).

        Texts are sorted by length so each batch pads to a similar length, which roughly
        halves CPU time on catalogues whose titles vary a lot in length.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = enter_eval(self)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        device = self.device
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            # Only the fused forward pads request-sized batches further (models.batch_shapes): its
            # vectors are their own kind, while autocast's must stay as stored.
            multiple = pad_multiple(len(idx)) if self.fused is not None else 1
            ids, mask = self.tokenize_ids([texts[i] for i in idx], multiple_of=multiple)
            out[idx] = self.embed_batch(ids.to(device), mask.to(device)).cpu().numpy()
        if was_training:
            self.train()
        return out

    def save(self, folder: str | Path) -> None:
        """Weights as safetensors plus the tokenizer; the manifest is written by the caller."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
