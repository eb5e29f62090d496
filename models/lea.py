"""LEA: a cross-encoder whose attention is biased by the lexical similarity of cross-text words.

Implements METHODS §2 (Almagro et al., KDD 2023) from the spec, not from any released code.
A typo changes the sub-word split of a word completely, so plain self-attention between the two
spellings collapses; LEA adds to every head's attention logit of each cross-text token pair a
learned function of the character similarity of the two tokens' words:

    A_lh = softmax(Q_h K_h^T / sqrt(d) + gamma_l * lambda * B_lh + M_pad)
    B_lh[i, j] = CROSS[i, j] * w_lh^T e(sim_bin[i, j])

The attention patching (the :class:`~models.lea_attention.LexicalBias` parameters and the
self-attention subclasses that add the bias, installed by class swap so that every state-dict
key stays a vanilla one) is ``models/lea_attention.py``; this module is the cross-encoder that
owns them: building, saving and loading the folder, the forward pass, explanations.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from models.artefacts import assert_safe_weights
from models.backbones import backbone_path
from models.batch_shapes import pad_multiple
from models.construction import builds_models
from models.eval_mode import enter_eval
from models.lea_attention import LeaContext, LeaOptions, LexicalBias, install_lea_attention
from models.lexical import DEFAULT_MAX_LENGTH, EncodedPair, LeaCollator, LexicalBatch
from models.precision import autocast

logger = logging.getLogger(__name__)

LEA_CONFIG = "lea_config.json"
LEA_WEIGHTS = "lea.safetensors"
LEA_FORMAT = 1


# --------------------------------------------------------------------------------------------
# The cross-encoder
# --------------------------------------------------------------------------------------------


class WordPairBias(NamedTuple):
    """One explanation row: a cross-text word pair, its similarity and the mean LEA bias."""

    word_a: str
    word_b: str
    similarity: float
    bias: float


class LeaCrossEncoder(nn.Module):
    """``AutoModelForSequenceClassification`` (one logit) with LEA attention installed.

    ``lea=False`` gives the vanilla cross-encoder through the same class (same head, collator
    and save format), so the LEA delta is isolated; ``use_bias=False`` switches the bias off at
    run time on a LEA model, reproducing the vanilla model exactly.

    Note: special tokens get no bias, and BERT's head reads only the [CLS] state of the last
    layer, so a bias in the *last* layer cannot change the logit (its projections get zero
    gradient). The spec's default of all layers is kept; ``layers`` can drop the last one.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        lea: bool = True,
        options: LeaOptions | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        name: str = "custom",
    ) -> None:
        super().__init__()
        if int(model.config.num_labels) != 1:
            raise ValueError("LeaCrossEncoder expects a one-logit classification head (num_labels=1)")
        self.model = model
        self.tokenizer = tokenizer
        self.options = options or LeaOptions()
        self.max_length = int(max_length)
        self.name = name
        self.use_bias = True
        # Inference precision (``fp32`` / ``bf16``, see models.precision); training autocasts itself.
        self.precision = "fp32"
        self._accepts_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
        self.lex: LexicalBias | None = None
        self.lea_layers: list[int] = []
        if lea:
            cfg = model.config
            opts = self.options
            self.lex = LexicalBias(
                n_layers=cfg.num_hidden_layers,
                n_heads=cfg.num_attention_heads,
                n_bins=opts.n_bins,
                d_e=opts.d_e,
                learnable=opts.learnable,
                layers=opts.layers,
                heads=opts.heads,
                lam=opts.lam,
                auto_gamma=opts.auto_gamma,
                init_std=opts.init_std,
            )
            self._ctx: LeaContext | None = LeaContext(self.lex)
            self.lea_layers = install_lea_attention(model, self._ctx)
        else:
            self._ctx = None
        self._collator: LeaCollator | None = None

    @property
    def serving_attention(self) -> bool:
        """Whether inference runs the LEA layers through the serving attention (the default; see
        :meth:`models.lea_attention._LeaAttentionMixin._lea_attend_inference`). ``False`` runs
        the training path's attention instead: the reference that tests and benchmarks compare
        the serving one with. Training always takes the training path."""
        return self._ctx is not None and self._ctx.serving_attention

    @serving_attention.setter
    def serving_attention(self, on: bool) -> None:
        if self._ctx is not None:
            self._ctx.serving_attention = bool(on)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    @builds_models
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        lea: bool = True,
        max_length: int = DEFAULT_MAX_LENGTH,
        attn_implementation: str | None = None,
        **lea_options: Any,
    ) -> LeaCrossEncoder:
        """A backbone (``minilm``, ``mpnet`` or a folder) with a fresh one-logit head.

        A folder written by :meth:`save` is delegated to :meth:`load` (trained LEA weights).
        """
        path = backbone_path(str(name_or_path))
        if (path / LEA_CONFIG).exists():
            if lea_options:
                raise ValueError(f"{path} is a saved LEA model; its options come from {LEA_CONFIG}")
            return cls.load(path, attn_implementation=attn_implementation)
        kwargs: dict[str, Any] = {"num_labels": 1, "use_safetensors": True}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
        out = cls(
            model,
            tokenizer,
            lea=lea,
            options=LeaOptions(**lea_options),
            max_length=max_length,
            name=str(name_or_path),
        )
        out.eval()
        return out

    @classmethod
    @builds_models
    def from_config(
        cls,
        config_overrides: dict[str, Any],
        lea: bool = True,
        tokenizer_from: str | Path = "minilm",
        model_type: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        attn_implementation: str | None = None,
        **lea_options: Any,
    ) -> LeaCrossEncoder:
        """A randomly initialised model (tiny models for tests).

        The config starts from ``tokenizer_from``'s config, or from the defaults of
        ``model_type`` (e.g. ``"mpnet"``) with the tokenizer's vocabulary size.
        """
        tok_path = backbone_path(str(tokenizer_from))
        tokenizer = AutoTokenizer.from_pretrained(tok_path)
        if model_type is None:
            config = AutoConfig.from_pretrained(tok_path)
        else:
            config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        for key, value in config_overrides.items():
            setattr(config, key, value)
        config.num_labels = 1
        kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        model = AutoModelForSequenceClassification.from_config(config, **kwargs)
        out = cls(
            model,
            tokenizer,
            lea=lea,
            options=LeaOptions(**lea_options),
            max_length=max_length,
            name="random-init",
        )
        out.eval()
        return out

    # -- persistence -------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """HF safetensors + tokenizer + ``lea_config.json`` + ``lea.safetensors`` (no pickle).

        The HF part has unchanged keys, so the folder also loads as a plain
        ``AutoModelForSequenceClassification`` (without the bias). The manifest is the caller's.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        config = {
            "format": LEA_FORMAT,
            "lea": self.lex is not None,
            "max_length": self.max_length,
            "options": asdict(self.options),
        }
        (folder / LEA_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        if self.lex is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.lex.state_dict().items()}
            save_file(state, str(folder / LEA_WEIGHTS), metadata={"format": str(LEA_FORMAT)})

    @classmethod
    @builds_models
    def load(cls, folder: str | Path, attn_implementation: str | None = None) -> LeaCrossEncoder:
        """Read a folder written by :meth:`save`; refuses pickled weights."""
        folder = Path(folder)
        assert_safe_weights(folder)
        config = json.loads((folder / LEA_CONFIG).read_text(encoding="utf-8"))
        if config.get("format") != LEA_FORMAT:
            raise ValueError(f"{folder / LEA_CONFIG}: format {config.get('format')!r}, expected {LEA_FORMAT}")
        kwargs: dict[str, Any] = {"use_safetensors": True}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        out = cls(
            model,
            tokenizer,
            lea=bool(config["lea"]),
            options=LeaOptions.from_dict(config["options"]),
            max_length=int(config["max_length"]),
            name=str(folder),
        )
        if out.lex is not None:
            out.lex.load_state_dict(load_file(str(folder / LEA_WEIGHTS)), strict=True)
        out.eval()
        return out

    # -- forward -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        lex_idx: torch.Tensor | None = None,
        lex_cross: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Match logits, shape (B,). The bias is used iff LEA, ``use_bias`` and ``lex_idx``."""
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._accepts_token_types:
            inputs["token_type_ids"] = token_type_ids
        active = self.lex is not None and self.use_bias and lex_idx is not None
        if not active:
            return self.model(**inputs).logits.squeeze(-1)
        assert self._ctx is not None and self.lex is not None
        if self.training and getattr(self.model, "is_gradient_checkpointing", False):
            # The recomputation runs in backward, after the context is cleared (and possibly on
            # another thread), so it would silently drop the bias.
            raise NotImplementedError("LEA does not support gradient checkpointing")
        self._ctx.set(*self._prepare(input_ids, attention_mask, lex_idx, lex_cross))
        try:
            return self.model(**inputs).logits.squeeze(-1)
        finally:
            self._ctx.clear()

    def _prepare(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        lex_idx: torch.Tensor | None,
        lex_cross: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.lex is not None and lex_idx is not None
        if lex_cross is None:
            raise ValueError("lex_cross is required with lex_idx")
        b, seq = input_ids.shape
        if lex_idx.shape != (b, seq, seq) or lex_cross.shape != (b, seq, seq):
            raise ValueError(
                f"lexical matrices {tuple(lex_idx.shape)}/{tuple(lex_cross.shape)} do not match "
                f"input_ids {tuple(input_ids.shape)}"
            )
        device = input_ids.device
        idx = LexicalBias.mask_index(lex_idx.to(device), lex_cross.to(device), self.lex.n_bins)
        return idx, attention_mask.to(device).bool()

    # -- conveniences ------------------------------------------------------------------------

    @property
    def collator(self) -> LeaCollator:
        """A collator matching this model (tokenizer, max length, metric, bins)."""
        if self._collator is None:
            self._collator = LeaCollator(
                self.tokenizer,
                max_length=self.max_length,
                metric=self.options.metric,
                n_bins=self.options.n_bins,
                lexical=self.lex is not None,
            )
        return self._collator

    def batch_forward(self, batch: LexicalBatch) -> torch.Tensor:
        return self.forward(**batch.to(self.device).model_inputs())

    def predict_logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """Logits for ``(a, b)`` pairs, float32 (n,), in :attr:`precision`; outputs in input order."""
        return self.predict_encoded(self.collator.encode(list(pairs)), batch_size=batch_size)

    @torch.inference_mode()
    def predict_encoded(self, items: Sequence[EncodedPair], batch_size: int = 64) -> np.ndarray:
        """Logits of pairs already encoded by :meth:`LeaCollator.encode` (e.g. cached once per dataset).

        Pairs are sorted by token length so each batch pads to about its own length.
        """
        if len(items) == 0:
            return np.zeros(0, dtype=np.float32)
        was_training = enter_eval(self)
        order = np.argsort([len(it) for it in items], kind="stable")
        out = np.empty(len(items), dtype=np.float32)
        try:
            with autocast(self.precision, self.device):
                for start in range(0, len(items), batch_size):
                    chunk = order[start : start + batch_size]
                    batch = self.collator.pad([items[i] for i in chunk], multiple_of=pad_multiple(len(chunk)))
                    out[chunk] = self.batch_forward(batch).float().cpu().numpy()
        finally:
            if was_training:
                self.train()
        return out

    @torch.no_grad()
    def mean_bias_per_bin(self) -> torch.Tensor:
        """(n_bins,) bias ``gamma*lambda*W E^T`` averaged over the biased layers and heads."""
        if self.lex is None:
            raise ValueError("a vanilla (lea=False) model has no lexical bias")
        lex = self.lex
        tables = lex.bins_table() * (lex.gamma * lex.lam)[:, None, None]
        return tables.mean(dim=(0, 1)).float().cpu()

    def explain(self, pair: tuple[str, str], top: int = 5) -> list[WordPairBias]:
        """The ``top`` cross-text word pairs with the strongest (largest) mean LEA bias.

        The bias of a word pair depends only on its similarity bin; it is averaged over the
        layers and heads that carry the bias. Ties go to the more similar pair.
        """
        per_bin = self.mean_bias_per_bin()
        rows = [
            WordPairBias(p.word_a, p.word_b, p.similarity, float(per_bin[p.bin]))
            for p in self.collator.word_pairs(pair[0], pair[1])
        ]
        rows.sort(key=lambda r: (-r.bias, -r.similarity, r.word_a, r.word_b))
        return rows[: max(0, top)]

    @torch.no_grad()
    def bias_ratios(self, batch: LexicalBatch) -> dict[int, float]:
        """Per layer ``mean|gamma*lambda*B| / mean|QK^T/sqrt(d)|`` on cross entries (METHODS §2.6).

        Runs one forward in eval mode (gamma is not touched) on ``batch``.
        """
        if self.lex is None or self._ctx is None:
            raise ValueError("a vanilla (lea=False) model has no lexical bias")
        was_training = enter_eval(self)
        batch = batch.to(self.device)
        ratios: dict[int, float] = {}
        idx, token_mask = self._prepare(batch.input_ids, batch.attention_mask, batch.lex_idx, batch.lex_cross)
        self._ctx.set(idx, token_mask, ratios)
        try:
            inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
            if batch.token_type_ids is not None and self._accepts_token_types:
                inputs["token_type_ids"] = batch.token_type_ids
            self.model(**inputs)
        finally:
            self._ctx.clear()
            if was_training:
                self.train()
        return dict(sorted(ratios.items()))

    # -- parameter groups --------------------------------------------------------------------

    def lea_parameters(self) -> Iterator[nn.Parameter]:
        """LEA's own parameters (projections, learnable embedding), e.g. for a 10x LR group."""
        return iter(()) if self.lex is None else self.lex.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def n_lea_parameters(self) -> int:
        return sum(p.numel() for p in self.lea_parameters())


__all__ = [
    "LEA_CONFIG",
    "LEA_WEIGHTS",
    "LeaCrossEncoder",
    "WordPairBias",
]
