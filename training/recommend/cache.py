"""Cache the frozen lower layers of a BERT-style bi-encoder, per text (a CPU-budget device).

When only the top ``n`` transformer layers train, the embeddings and lower layers are a fixed
function of the text: their token states are computed once (eval mode, no dropout) and each
training step runs only the top layers on the cached states. Padding never changes a real
token's state (it is masked in attention), so the cache is exact up to float rounding. One
cache serves every model that shares the same frozen bottom, e.g. zero-shot, NGAME and PRIME
in one benchmark run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from models.bi_encoder import BiEncoder
from models.pooling import mean_pool

logger = logging.getLogger(__name__)


def transformer_layers(encoder: BiEncoder) -> nn.ModuleList | None:
    return getattr(getattr(encoder.backbone, "encoder", None), "layer", None)


class FrozenBottomCache:
    """Token states after the first ``n_frozen`` layers of ``encoder``'s backbone, keyed by text."""

    def __init__(self, encoder: BiEncoder, n_frozen: int, batch_size: int = 128) -> None:
        layers = transformer_layers(encoder)
        if layers is None or not hasattr(encoder.backbone, "embeddings"):
            raise ValueError("the frozen-bottom cache needs a BERT-style backbone (embeddings + encoder.layer)")
        if not 0 <= n_frozen <= len(layers):
            raise ValueError(f"n_frozen must lie in [0, {len(layers)}]")
        self.n_frozen = n_frozen
        self.max_length = encoder.max_length
        self.batch_size = batch_size
        self._states: dict[str, torch.Tensor] = {}
        self._encoder = encoder

    def __len__(self) -> int:
        return len(self._states)

    @torch.inference_mode()
    def fill(self, texts: Sequence[str]) -> None:
        """Compute and keep the bottom states of every text not cached yet (length-sorted batches)."""
        missing = sorted({t for t in texts if t not in self._states}, key=len)
        if not missing:
            return
        enc = self._encoder
        was_training = enc.training
        enc.eval()
        layers = transformer_layers(enc)
        assert layers is not None
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            batch = enc.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            hidden = enc.backbone.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
            mask = batch["attention_mask"]
            ext = enc.backbone.get_extended_attention_mask(mask, mask.shape)
            for layer in layers[: self.n_frozen]:
                hidden = layer(hidden, attention_mask=ext)[0]
            lengths = mask.sum(dim=1).tolist()
            for text, h, n in zip(chunk, hidden, lengths):
                self._states[text] = h[: int(n)].clone()
        if was_training:
            enc.train()

    def forward(self, encoder: BiEncoder, texts: Sequence[str]) -> torch.Tensor:
        """Unit embeddings of ``texts`` through ``encoder``'s top layers (gradients flow into them)."""
        self.fill(texts)
        states = [self._states[t] for t in texts]
        longest = max(s.shape[0] for s in states)
        dim = states[0].shape[1]
        hidden = torch.zeros(len(states), longest, dim)
        mask = torch.zeros(len(states), longest, dtype=torch.long)
        for i, s in enumerate(states):
            hidden[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = 1
        layers = transformer_layers(encoder)
        assert layers is not None
        ext = encoder.backbone.get_extended_attention_mask(mask, mask.shape)
        for layer in layers[self.n_frozen :]:
            hidden = layer(hidden, attention_mask=ext)[0]
        return nn.functional.normalize(mean_pool(hidden, mask), p=2, dim=-1)

    @torch.inference_mode()
    def encode(self, encoder: BiEncoder, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Like :meth:`BiEncoder.encode` (float32 unit vectors), but only the top layers run."""
        if len(texts) == 0:
            return np.zeros((0, encoder.dim), dtype=np.float32)
        was_training = encoder.training
        encoder.eval()
        self.fill(texts)
        order = np.argsort([self._states[t].shape[0] for t in texts], kind="stable")
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.forward(encoder, [texts[i] for i in idx]).float().numpy()
        if was_training:
            encoder.train()
        return out
