"""A recommender model: a bi-encoder plus (PRIME) the label prototype network and seen-label vectors.

Folder layout (no pickles anywhere)::

    manifest.json         kind "recommender", method, settings, metrics
    encoder/              the bi-encoder (safetensors + tokenizer)
    prime.safetensors     LPN / pair-head weights, seen-label vectors, prototypes, free-vector index
    labels.json           keys and texts of the seen labels, in the row order of the tensors

Seen labels (keys in ``labels.json``) are served by their stored prototype vector ``l_r``;
every other label by its text embedding ``u_r`` (METHODS §4.7).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.artefacts import Manifest, ManifestError, assert_safe_weights, read_manifest, write_manifest
from models.bi_encoder import BiEncoder
from models.prime import LabelPrototypeNetwork, PairHead
from models.vixml import ImageFusionEncoder

logger = logging.getLogger(__name__)

MODEL_KIND = "recommender"
METHODS = ("zero-shot", "ngame", "prime")
AUTOMATION_SCORES = ("cosine", "margin", "pair")
ZERO_SHOT_MAX_LENGTH = 32
_WEIGHTS = "prime.safetensors"
_LABELS = "labels.json"


def automation_score(
    kind: str,
    queries: np.ndarray,
    labels: np.ndarray,
    top_scores: np.ndarray | None,
    pair: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Automation score of each query's top-1 label (see :data:`AUTOMATION_SCORES`)."""
    cosine = np.einsum("ij,ij->i", queries, labels).astype(np.float64)
    if kind == "cosine":
        return cosine
    if kind == "margin":
        if top_scores is None or top_scores.shape[1] < 2:
            return cosine  # a single label has no runner-up
        return (top_scores[:, 0] - top_scores[:, 1]).astype(np.float64)
    if kind == "pair" and pair is not None:
        return pair(queries, labels)
    raise ValueError(f"unknown automation score {kind!r}")


class RecommenderModel:
    """Query encoder, label vectors (prototype for seen labels, text otherwise), automation score."""

    def __init__(
        self,
        encoder: BiEncoder,
        method: str = "zero-shot",
        lpn: LabelPrototypeNetwork | None = None,
        pair_head: PairHead | None = None,
        seen_keys: Sequence[str] = (),
        seen_texts: Sequence[str] = (),
        seen_vectors: np.ndarray | None = None,
        prototypes: np.ndarray | None = None,
        free_index: np.ndarray | None = None,
        automation: str = "cosine",
        settings: dict[str, Any] | None = None,
        encode_batch_size: int = 128,
        fusion: ImageFusionEncoder | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if automation not in AUTOMATION_SCORES:
            raise ValueError(f"automation must be one of {AUTOMATION_SCORES}, got {automation!r}")
        if automation == "pair" and pair_head is None:
            raise ValueError("automation 'pair' needs a pair head (train with --alc)")
        self.encoder = encoder
        self.method = method
        self.lpn = lpn
        self.pair_head = pair_head
        self.seen_keys = list(seen_keys)
        self.seen_texts = list(seen_texts)
        dim = encoder.dim
        self.seen_vectors = (
            np.zeros((0, dim), dtype=np.float32) if seen_vectors is None else np.asarray(seen_vectors, np.float32)
        )
        if len(self.seen_vectors) != len(self.seen_keys):
            raise ValueError("one seen vector per seen key")
        self.prototypes = prototypes
        self.free_index = free_index
        self.automation = automation
        self.settings = dict(settings or {})
        self.encode_batch_size = encode_batch_size
        self._seen_row = {k: i for i, k in enumerate(self.seen_keys)}
        # ViXML: query images become tokens through this projection (None = a text-only model).
        self.fusion = fusion
        if fusion is not None and fusion.encoder is not encoder:
            raise ValueError("the image fusion must wrap the model's own encoder")
        # Optional replacement for encoder.encode (same vectors, computed faster): the training
        # package plugs in its frozen-bottom cache here.
        self.encode_fn: Callable[[list[str]], np.ndarray] | None = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.encode_fn is not None:
            return self.encode_fn(texts)
        return self.encoder.encode(texts, batch_size=self.encode_batch_size)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def name(self) -> str:
        return self.settings.get("name", self.method)

    @property
    def uses_images(self) -> bool:
        return self.fusion is not None

    # ------------------------------------------------------------------ inference
    def encode_queries(
        self, texts: Sequence[str], image_feats: np.ndarray | None = None, image_mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Query vectors; with a fusion and image features ``(n, 3, 1280)`` + mask, images become tokens."""
        if image_feats is not None and self.fusion is not None and image_mask is not None and image_mask.any():
            return self.fusion.encode(list(texts), image_feats, image_mask, batch_size=self.encode_batch_size)
        return self._encode(list(texts))

    def is_seen(self, key: str) -> bool:
        return key in self._seen_row

    def label_vectors(self, keys: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Seen keys -> stored prototype vectors; the others -> text embeddings of ``texts``."""
        if len(keys) != len(texts):
            raise ValueError("one text per label key")
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        unseen = [i for i, k in enumerate(keys) if k not in self._seen_row]
        seen = [i for i, k in enumerate(keys) if k in self._seen_row]
        if seen:
            out[seen] = self.seen_vectors[[self._seen_row[keys[i]] for i in seen]]
        if unseen:
            out[unseen] = self._encode([texts[i] for i in unseen])
        return out

    @torch.inference_mode()
    def pair_probabilities(self, queries: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """ALC pair-head probability that each (query, label) row pair is correct."""
        if self.pair_head is None:
            raise ValueError("this model has no pair head")
        self.pair_head.eval()
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        logits = self.pair_head(q, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32)))
        return torch.sigmoid(logits).double().numpy()

    def automation_scores(
        self, queries: np.ndarray, labels: np.ndarray, top_scores: np.ndarray | None = None
    ) -> np.ndarray:
        """The score that decides automation of (query, top-1 label): cosine, top-1 minus top-2 cosine
        (``margin``; needs ``top_scores``, the ranked scores of each query), or the pair-head probability."""
        return automation_score(self.automation, queries, labels, top_scores, self.pair_probabilities)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path, manifest: Manifest) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save(folder / "encoder")
        tensors: dict[str, torch.Tensor] = {"seen_vectors": torch.from_numpy(self.seen_vectors).contiguous()}
        if self.lpn is not None:
            tensors.update({f"lpn.{k}": v.detach().contiguous() for k, v in self.lpn.state_dict().items()})
        if self.pair_head is not None:
            tensors.update({f"pair_head.{k}": v.detach().contiguous() for k, v in self.pair_head.state_dict().items()})
        if self.fusion is not None:
            fused = {k: v for k, v in self.fusion.state_dict().items() if not k.startswith("encoder.")}
            tensors.update({f"image.{k}": v.detach().contiguous() for k, v in fused.items()})
        if self.prototypes is not None:
            tensors["prototypes"] = torch.from_numpy(np.asarray(self.prototypes, np.float32)).contiguous()
        if self.free_index is not None:
            tensors["free_index"] = torch.from_numpy(np.asarray(self.free_index, np.int64)).contiguous()
        save_file(tensors, str(folder / _WEIGHTS))
        (folder / _LABELS).write_text(
            json.dumps({"keys": self.seen_keys, "texts": self.seen_texts}, ensure_ascii=False), encoding="utf-8"
        )
        settings = dict(manifest.settings)
        settings.update(
            {
                "method": self.method,
                "automation": self.automation,
                "max_length": self.encoder.max_length,
                "dim": self.dim,
                "seen_labels": len(self.seen_keys),
                "n_free": int(self.lpn.free.shape[0]) if self.lpn is not None else 0,
                "nhead": int(self.lpn.layer.self_attn.num_heads) if self.lpn is not None else 0,
                "dim_feedforward": int(self.lpn.layer.linear1.out_features) if self.lpn is not None else 0,
                "image_dim": int(self.fusion.project.in_features) if self.fusion is not None else 0,
                "image_layer_norm": bool(self.fusion is not None and isinstance(self.fusion.norm, torch.nn.LayerNorm)),
            }
        )
        manifest.settings = settings
        manifest.kind = MODEL_KIND
        write_manifest(folder, manifest)

    @classmethod
    def zero_shot(cls, backbone: str = "minilm", max_length: int = ZERO_SHOT_MAX_LENGTH) -> RecommenderModel:
        encoder = BiEncoder.from_pretrained(backbone, max_length=max_length)
        return cls(encoder, "zero-shot", settings={"name": "minilm-zero-shot", "backbone": backbone})

    @classmethod
    def load(cls, folder: str | Path) -> RecommenderModel:
        """Load a folder written by :meth:`save`; manifest checked, safetensors only."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest.kind != MODEL_KIND:
            raise ManifestError(f"{folder} holds a {manifest.kind!r} model, not a {MODEL_KIND}")
        assert_safe_weights(folder)
        assert_safe_weights(folder / "encoder")
        s = manifest.settings
        encoder = BiEncoder.from_pretrained(str(folder / "encoder"), max_length=int(s.get("max_length", 32)))
        tensors = load_file(str(folder / _WEIGHTS)) if (folder / _WEIGHTS).exists() else {}
        labels = json.loads((folder / _LABELS).read_text(encoding="utf-8")) if (folder / _LABELS).exists() else {}
        lpn = None
        if any(k.startswith("lpn.") for k in tensors):
            lpn = LabelPrototypeNetwork(
                int(s["dim"]), int(s["n_free"]), nhead=int(s["nhead"]), dim_feedforward=int(s["dim_feedforward"])
            )
            lpn.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("lpn.")})
            lpn.eval()
        head = None
        if any(k.startswith("pair_head.") for k in tensors):
            head = PairHead(int(s["dim"]))
            head.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("pair_head.")})
            head.eval()
        fusion = None
        if any(k.startswith("image.") for k in tensors):
            fusion = ImageFusionEncoder(encoder, int(s["image_dim"]), layer_norm=bool(s.get("image_layer_norm")))
            fusion.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("image.")}, strict=False)
            fusion.eval()
        seen = tensors.get("seen_vectors")
        return cls(
            encoder,
            method=str(s.get("method", "zero-shot")),
            lpn=lpn,
            pair_head=head,
            seen_keys=labels.get("keys", []),
            seen_texts=labels.get("texts", []),
            seen_vectors=None if seen is None else seen.numpy(),
            prototypes=tensors["prototypes"].numpy() if "prototypes" in tensors else None,
            free_index=tensors["free_index"].numpy() if "free_index" in tensors else None,
            automation=str(s.get("automation", "cosine")),
            settings={**s, "name": str(folder)},
            fusion=fusion,
        )
