"""The serving-side wrapper around the bi-encoder: one model id, thread-safe encode."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import torch

from app.core.config import Settings
from models.bi_encoder import BiEncoder
from models.devices import resolve_device
from models.serving_precision import RESOLVED_PRECISIONS, resolve_serving_precision, serve_bi_encoder

logger = logging.getLogger(__name__)


# How vectors were computed -> the suffix of their model id. bf16-fused is the fused CPU forward
# (models/fused_bert.py), whose vectors differ from bf16 autocast's in the last bits.
VECTOR_TAGS = {"fp32": "", "bf16": "+bf16", "bf16-fused": "+bf16f", "int8": "+int8"}


def tagged_model_id(base: str, precision: str) -> str:
    """The id that tags vectors of model ``base`` computed in a resolved ``precision`` (or kind).

    Vectors of bf16 or int8 differ slightly from fp32 ones, so each precision keeps its own
    id: switching the setting re-embeds the catalogue beside the old vectors instead of mixing
    them. fp32 keeps the bare id, which is what every stored vector carried before. ``precision``
    may also be a :class:`~models.bi_encoder.BiEncoder`'s ``vector_kind`` (``bf16-fused``).
    """
    if precision not in VECTOR_TAGS:
        raise ValueError(f"a resolved precision is one of {RESOLVED_PRECISIONS} (or bf16-fused), got {precision!r}")
    return f"{base}{VECTOR_TAGS[precision]}"


def packaged_version(name_or_path: str) -> str:
    """The version a configured encoder (packaged name or folder) serves under, before its precision tag."""
    return "minilm-l6-v2-zero-shot" if name_or_path == "minilm" else str(name_or_path)


def untagged(model_id: str) -> str:
    """The version inside a vector model id (:func:`tagged_model_id` undone)."""
    for tag in VECTOR_TAGS.values():
        if tag and model_id.endswith(tag):
            return model_id.removesuffix(tag)
    return model_id


class Encoder:
    """Embeds offers and products; `model_id` tags every stored vector.

    ``version`` is the model's own name (registry version or encoder name); ``model_id`` adds
    how the vectors are computed (:func:`tagged_model_id`): the precision, and for bf16 whether
    through the fused CPU forward.

    Calls are serialised: on a small CPU box two concurrent forward passes only fight over
    the same cores, and one at a time keeps latency predictable.
    """

    def __init__(self, model: BiEncoder, version: str, batch_size: int = 64, precision: str | None = None) -> None:
        self.model = model
        self.version = version
        # None: the precision the model's encode() autocasts to (an fp32 or bf16 BiEncoder).
        self.precision = precision or model.precision
        fused = self.precision == "bf16" and model.vector_kind == "bf16-fused"
        self.model_id = tagged_model_id(version, "bf16-fused" if fused else self.precision)
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
        precision: str = "fp32",
    ) -> Encoder:
        """A bi-encoder folder or name served in ``precision`` (auto / bf16 / fp32 / int8).

        ``quantize="int8"`` is the older spelling of ``precision="int8"``.
        """
        if threads:
            torch.set_num_threads(threads)
        if quantize != "none":
            if quantize != "int8":
                raise ValueError(f"quantize must be one of ('none', 'int8'), got {quantize!r}")
            if precision not in ("fp32", "int8"):
                raise ValueError(f"quantize={quantize!r} contradicts precision={precision!r}")
            precision = "int8"
        target = resolve_device(device)
        resolved = resolve_serving_precision(precision, target)
        model = serve_bi_encoder(
            BiEncoder.from_pretrained(name_or_path, max_length=max_length), resolved, device=target
        )
        model.to(target)
        version = model_id or packaged_version(name_or_path)
        encoder = cls(model, version, batch_size, precision=resolved)
        logger.info("loaded encoder %s (dim %d) on %s in %s", encoder.model_id, model.dim, target, resolved)
        return encoder

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoder:
        """The configured default encoder (ENCODER, with its length, batch, threads, precision, device)."""
        return cls.load(
            settings.encoder,
            max_length=settings.encoder_max_length,
            batch_size=settings.encoder_batch_size,
            threads=settings.torch_threads,
            precision=settings.encoder_precision,
            device=settings.device,
        )

    @property
    def dim(self) -> int:
        return self.model.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.model.encode(list(texts), batch_size=self.batch_size)
