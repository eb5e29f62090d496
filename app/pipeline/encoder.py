"""The serving-side wrapper around the bi-encoder: one model id, thread-safe encode."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import torch

from app.core.config import Settings
from models.bi_encoder import BiEncoder
from models.devices import check_quantize_device, resolve_device
from models.quantize import apply_quantization

logger = logging.getLogger(__name__)


class Encoder:
    """Embeds offers and products; `model_id` tags every stored vector.

    Calls are serialised: on a small CPU box two concurrent forward passes only fight over
    the same cores, and one at a time keeps latency predictable.
    """

    def __init__(self, model: BiEncoder, model_id: str, batch_size: int = 64) -> None:
        self.model = model
        self.model_id = model_id
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        name_or_path: str,
        max_length: int = 64,
        batch_size: int = 64,
        threads: int | None = None,
        model_id: str | None = None,
        quantize: str = "none",
        device: str = "cpu",
    ) -> Encoder:
        if threads:
            torch.set_num_threads(threads)
        target = resolve_device(device)
        check_quantize_device(quantize, target)
        model = apply_quantization(BiEncoder.from_pretrained(name_or_path, max_length=max_length), quantize)
        model.to(target)
        ident = model_id or ("minilm-l6-v2-zero-shot" if name_or_path == "minilm" else str(name_or_path))
        if quantize != "none":
            # Quantised vectors differ slightly from fp32 ones: a distinct id keeps the two sets
            # apart, so switching the setting re-embeds the catalogue instead of mixing them.
            ident = f"{ident}+{quantize}"
        logger.info("loaded encoder %s (dim %d) on %s", ident, model.dim, target)
        return cls(model, ident, batch_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoder:
        """The configured default encoder (ENCODER, with its length, batch, threads, quantisation, device)."""
        return cls.load(
            settings.encoder,
            max_length=settings.encoder_max_length,
            batch_size=settings.encoder_batch_size,
            threads=settings.torch_threads,
            quantize=settings.encoder_quantize,
            device=settings.device,
        )

    @property
    def dim(self) -> int:
        return self.model.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.model.encode(list(texts), batch_size=self.batch_size)
