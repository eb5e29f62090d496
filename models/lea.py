"""LEA: a cross-encoder whose attention is biased by the lexical similarity of cross-text words.

Implements METHODS §2 (Almagro et al., KDD 2023) from the spec, not from any released code.
A typo changes the sub-word split of a word completely, so plain self-attention between the two
spellings collapses; LEA adds to every head's attention logit of each cross-text token pair a
learned function of the character similarity of the two tokens' words:

    A_lh = softmax(Q_h K_h^T / sqrt(d) + gamma_l * lambda * B_lh + M_pad)
    B_lh[i, j] = CROSS[i, j] * w_lh^T e(sim_bin[i, j])

How it is wired into Hugging Face models, and why:

* The model-level attention mask is broadcast over heads, so a *per-head* bias needs per-layer
  code. Each wrapped self-attention module keeps its own parameters and its class is swapped
  for a subclass (``LeaBertSelfAttention`` ...) whose ``forward`` computes Q, K, V with the
  original weights and adds the bias before the padding mask. Swapping the class instead of
  nesting the module keeps every state-dict key unchanged, so ``save_pretrained`` folders load
  in a vanilla ``AutoModelForSequenceClassification`` and vice versa, and with the bias off the
  subclass simply calls the untouched HF ``forward`` (bit-identical to the vanilla model).
* The lexical matrices reach the layers through a :class:`LeaContext` that the wrapper fills
  before calling the HF model and clears afterwards, so no HF signature changes. Its per-call
  state is thread-local, so one model may serve several threads.
* All LEA parameters live in one :class:`LexicalBias` owned by :class:`LeaCrossEncoder` (not
  inside the HF model), saved to ``lea.safetensors`` next to the HF weights.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.bert.modeling_bert import BertSdpaSelfAttention, BertSelfAttention
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from models.artefacts import assert_safe_weights
from models.backbones import backbone_path
from models.lexical import DEFAULT_MAX_LENGTH, DEFAULT_N_BINS, EncodedPair, LeaCollator, LexicalBatch
from models.precision import autocast

logger = logging.getLogger(__name__)

LEA_CONFIG = "lea_config.json"
LEA_WEIGHTS = "lea.safetensors"
LEA_FORMAT = 1


# --------------------------------------------------------------------------------------------
# Options and the shared lexical-bias module
# --------------------------------------------------------------------------------------------


@dataclass
class LeaOptions:
    """LEA hyper-parameters (METHODS §2.3-2.4); defaults are the spec's defaults.

    ``layers``: encoder layer indices that get the bias (None = all; negative indices count
    from the top; ``[0, 1, 2, 3, 4]`` is all but the last of MiniLM-L6). ``heads``: an int ``n`` for
    the first ``n`` heads, a list of head indices, or None for all. ``auto_gamma``: scale the bias
    per layer by the mean max query-query logit of the first training batch (else gamma = 1).
    """

    n_bins: int = DEFAULT_N_BINS
    d_e: int = 50
    learnable: bool = False
    layers: list[int] | None = None
    heads: int | list[int] | None = None
    lam: float = 1.0
    auto_gamma: bool = True
    init_std: float = 0.02
    metric: str = "levenshtein"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeaOptions:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown LEA options: {sorted(unknown)}")
        return cls(**data)


def sinusoidal_table(n_bins: int, d_e: int) -> torch.Tensor:
    """Fixed embedding of the ``n_bins`` similarity levels on [0, 1]: sin block then cos block."""
    if d_e % 2:
        raise ValueError("d_e must be even for the sinusoidal embedding")
    levels = torch.linspace(0.0, 1.0, n_bins, dtype=torch.float64)
    omega = 2 * math.pi / 10000 ** (torch.arange(0, d_e, 2, dtype=torch.float64) / d_e)
    angles = levels[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


class LexicalBias(nn.Module):
    """Similarity embedding shared by all layers + one projection per (layer, head).

    Lookup-table form (METHODS §2.5): only ``n_bins`` similarity values exist, so per layer the
    table ``T_l = W_l E^T`` (heads x bins) is computed once and gathered by the bin index,
    instead of projecting an (B, L, L, d_e) embedding tensor. Non-cross entries are redirected
    to an extra all-zero column (index ``n_bins``), which equals multiplying by CROSS without
    materialising the product per layer.
    """

    # Buffers registered in __init__ (nn.Module's __getattr__ would type them Tensor | Module).
    table: torch.Tensor
    head_index: torch.Tensor
    gamma: torch.Tensor
    gamma_set: torch.Tensor

    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        n_bins: int = DEFAULT_N_BINS,
        d_e: int = 50,
        learnable: bool = False,
        layers: Sequence[int] | None = None,
        heads: int | Sequence[int] | None = None,
        lam: float = 1.0,
        auto_gamma: bool = True,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.n_layers = int(n_layers)
        self.n_heads = int(n_heads)
        self.n_bins = int(n_bins)
        self.d_e = int(d_e)
        self.lam = float(lam)
        self.auto_gamma = bool(auto_gamma)
        chosen = list(range(n_layers)) if layers is None else [int(x) for x in layers]
        if not chosen or not all(-n_layers <= x < n_layers for x in chosen):
            raise ValueError(f"layers must be a non-empty subset of 0..{n_layers - 1}, got {layers}")
        self.layers = sorted({x % n_layers for x in chosen})  # negative indices count from the top
        if heads is None:
            head_list = list(range(n_heads))
        elif isinstance(heads, int):
            head_list = list(range(heads))
        else:
            head_list = sorted({int(h) for h in heads})
        if not head_list or not all(0 <= h < n_heads for h in head_list):
            raise ValueError(f"heads must select at least one of 0..{n_heads - 1}, got {heads}")
        self.heads = head_list
        self._layer_pos = {layer: p for p, layer in enumerate(self.layers)}
        self._all_heads = len(head_list) == n_heads

        table = sinusoidal_table(self.n_bins, self.d_e)
        if learnable:
            # Start from the fixed table so "learnable" only adds freedom, not a different start.
            self.emb: nn.Embedding | None = nn.Embedding(self.n_bins, self.d_e)
            with torch.no_grad():
                self.emb.weight.copy_(table)
        else:
            self.emb = None
            self.register_buffer("table", table)
        self.proj = nn.Parameter(torch.randn(len(self.layers), len(head_list), self.d_e) * init_std)
        self.register_buffer("head_index", torch.tensor(head_list, dtype=torch.long), persistent=False)
        # gamma is a buffer: set once from data, then frozen and saved with the weights.
        self.register_buffer("gamma", torch.ones(len(self.layers)))
        self.register_buffer("gamma_set", torch.zeros(len(self.layers), dtype=torch.bool))

    # -- structure ---------------------------------------------------------------------------

    def has_layer(self, layer: int) -> bool:
        return layer in self._layer_pos

    def embeddings(self) -> torch.Tensor:
        """(n_bins, d_e) embedding of the similarity levels."""
        return self.emb.weight if self.emb is not None else self.table

    @staticmethod
    def mask_index(idx: torch.Tensor, cross: torch.Tensor, n_bins: int) -> torch.Tensor:
        """Bin index with non-cross entries sent to the zero column ``n_bins`` (long)."""
        return torch.where(cross.bool(), idx.long(), torch.full_like(idx, n_bins, dtype=torch.long))

    # -- gamma -------------------------------------------------------------------------------

    @torch.no_grad()
    def update_gamma(self, layer: int, q: torch.Tensor, token_mask: torch.Tensor | None) -> None:
        """Set gamma_l once: mean over batch, heads and real tokens i of max_j <q_i, q_j>.

        ``q``: (B, H, L, d_head) unscaled queries; ``token_mask``: (B, L) True on real tokens.
        Called by the attention modules in training mode only; later calls are no-ops.
        """
        p = self._layer_pos[layer]
        if not self.auto_gamma or bool(self.gamma_set[p]):
            return
        qf = q.float()
        dots = qf @ qf.transpose(-1, -2)  # (B, H, L, L)
        if token_mask is not None:
            valid = token_mask.bool().to(dots.device)
            dots = dots.masked_fill(~valid[:, None, None, :], float("-inf"))
            row_max = dots.amax(dim=-1)  # (B, H, L)
            weights = valid[:, None, :].expand_as(row_max).float()
            value = (row_max.nan_to_num(0.0, neginf=0.0) * weights).sum() / weights.sum().clamp(min=1.0)
        else:
            value = dots.amax(dim=-1).mean()
        self.gamma[p] = value.to(self.gamma.dtype)
        self.gamma_set[p] = True
        logger.info("LEA gamma for layer %d set to %.4f", layer, float(value))

    def reset_gamma(self) -> None:
        """Forget gamma so the next training forward recomputes it (e.g. a new backbone)."""
        self.gamma.fill_(1.0)
        self.gamma_set.fill_(False)

    # -- the bias ----------------------------------------------------------------------------

    def bins_table(self) -> torch.Tensor:
        """(n_selected_layers, n_selected_heads, n_bins) raw tables ``W_l E^T`` (no gamma)."""
        return torch.einsum("lhd,nd->lhn", self.proj, self.embeddings())

    def layer_table(self, layer: int) -> torch.Tensor:
        """(n_heads, n_bins + 1) table ``gamma_l * lambda * W_l E^T`` with a zero last column.

        Heads outside the selection get all-zero rows.
        """
        p = self._layer_pos[layer]
        t = (self.proj[p] @ self.embeddings().t()) * (self.gamma[p] * self.lam)  # (Hs, N)
        t = F.pad(t, (0, 1))  # column N: no bias (non-cross entries)
        if self._all_heads:
            return t
        full = t.new_zeros(self.n_heads, self.n_bins + 1)
        return full.index_copy(0, self.head_index, t)

    def bias(self, layer: int, idx: torch.Tensor, cross: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, L, L) additive logit bias of ``layer``, including gamma and lambda.

        ``idx``: (B, L, L) bins; if ``cross`` is None, ``idx`` must already be masked with
        :meth:`mask_index` (values ``n_bins`` = no bias).
        """
        if cross is not None:
            idx = self.mask_index(idx, cross, self.n_bins)
        table = self.layer_table(layer)  # (H, N+1)
        return F.embedding(idx, table.t().contiguous()).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------
# Context and attention modules
# --------------------------------------------------------------------------------------------


class LeaContext:
    """Carries the current batch's lexical index from the wrapper to the attention modules.

    Per-call state is thread-local. Holding ``lex`` here (a plain object, not a module
    attribute) keeps the LEA parameters out of the HF model's state dict.
    """

    def __init__(self, lex: LexicalBias) -> None:
        self.lex = lex
        self._local = threading.local()

    @property
    def idx(self) -> torch.Tensor | None:
        return getattr(self._local, "idx", None)

    @property
    def token_mask(self) -> torch.Tensor | None:
        return getattr(self._local, "token_mask", None)

    @property
    def ratios(self) -> dict[int, float] | None:
        return getattr(self._local, "ratios", None)

    def set(self, idx: torch.Tensor, token_mask: torch.Tensor | None, ratios: dict[int, float] | None = None) -> None:
        self._local.idx = idx
        self._local.token_mask = token_mask
        self._local.ratios = ratios

    def clear(self) -> None:
        self._local.idx = None
        self._local.token_mask = None
        self._local.ratios = None

    def __deepcopy__(self, memo: dict[int, Any]) -> LeaContext:
        return LeaContext(copy.deepcopy(self.lex, memo))

    def __getstate__(self) -> dict[str, Any]:
        return {"lex": self.lex}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lex = state["lex"]
        self._local = threading.local()


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """HF passes additive float masks; convert a boolean one (True = attend) just in case."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


class _LeaAttentionMixin:
    """Shared bias-path logic of the LEA attention subclasses."""

    _lea_ctx: LeaContext | None
    _lea_layer: int
    # Provided by nn.Module and the HF attention class this mixin is combined with.
    training: bool
    dropout: nn.Dropout

    def _lea_active(self) -> bool:
        ctx = getattr(self, "_lea_ctx", None)
        return ctx is not None and ctx.idx is not None

    def _lea_attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attention_mask: torch.Tensor | None,
        head_mask: torch.Tensor | None,
        dropout: nn.Dropout,
        head_size: int,
        position_bias: torch.Tensor | None = None,
        use_sdpa: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Biased attention -> (context (B, H, L, d_head), probs or None)."""
        ctx = self._lea_ctx
        assert ctx is not None and ctx.idx is not None
        lex = ctx.lex
        layer = self._lea_layer
        if self.training:
            lex.update_gamma(layer, q, ctx.token_mask)
        bias = lex.bias(layer, ctx.idx)
        attention_mask = _additive(attention_mask, q.dtype)
        if ctx.ratios is not None:
            _record_ratio(ctx, layer, q, k, bias, head_size, position_bias)
        if use_sdpa and head_mask is None and not output_attentions and position_bias is None:
            mask = bias.to(q.dtype)
            if attention_mask is not None:
                mask = mask + attention_mask.to(q.dtype)
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout.p if self.training else 0.0,
            )
            return out, None
        # Same operations, in the same order, as the HF eager code, so a zero bias is exact.
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_size)
        if position_bias is not None:
            scores = scores + position_bias
        scores = scores + bias.to(scores.dtype)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = F.softmax(scores, dim=-1)
        probs = dropout(probs)
        if head_mask is not None:
            probs = probs * head_mask
        return torch.matmul(probs, v), probs


@torch.no_grad()
def _record_ratio(
    ctx: LeaContext,
    layer: int,
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor,
    head_size: int,
    position_bias: torch.Tensor | None,
) -> None:
    """mean|gamma*lambda*B| / mean|QK^T/sqrt(d)| over the biased (cross) entries (METHODS §2.6)."""
    assert ctx.ratios is not None and ctx.idx is not None
    cross = (ctx.idx < ctx.lex.n_bins)[:, None].expand_as(bias)
    if not bool(cross.any()):
        ctx.ratios[layer] = 0.0
        return
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(head_size)
    if position_bias is not None:
        scores = scores + position_bias.float()
    num = bias.float().abs()[cross].mean()
    den = scores.abs()[cross].mean().clamp(min=1e-12)
    ctx.ratios[layer] = float(num / den)


def _split_heads(x: torch.Tensor, n_heads: int, head_size: int) -> torch.Tensor:
    b = x.shape[0]
    return x.view(b, -1, n_heads, head_size).transpose(1, 2)


def _merge_heads(x: torch.Tensor, all_head_size: int) -> torch.Tensor:
    x = x.permute(0, 2, 1, 3).contiguous()
    return x.view(x.size()[:-2] + (all_head_size,))


class _LeaBertForward(_LeaAttentionMixin):
    """The BERT self-attention forward with the LEA bias, shared by the eager and SDPA classes.

    With no lexical context set it defers to the untouched transformers forward (next in the
    MRO), so a model with the bias off is bit-identical to vanilla.
    """

    _lea_sdpa = False
    # Provided by BertSelfAttention / BertSdpaSelfAttention, which follow this class in the MRO.
    num_attention_heads: int
    attention_head_size: int
    all_head_size: int
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        past_key_values: Any = None,
        output_attentions: bool | None = False,
        cache_position: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self._lea_active():
            return super().forward(  # type: ignore[misc]  # BERT's forward: next in the MRO, unknown to the mixin
                hidden_states,
                attention_mask,
                head_mask,
                encoder_hidden_states,
                past_key_values,
                output_attentions,
                cache_position,
                **kwargs,
            )
        if encoder_hidden_states is not None or past_key_values is not None:
            raise NotImplementedError("LEA bias supports encoder self-attention only (no cross-attn/cache)")
        n, d = self.num_attention_heads, self.attention_head_size
        q = _split_heads(self.query(hidden_states), n, d)
        k = _split_heads(self.key(hidden_states), n, d)
        v = _split_heads(self.value(hidden_states), n, d)
        if self._lea_sdpa:
            # HF's SDPA module returns (out, None); with output_attentions it falls back to eager,
            # which returns the probabilities, and so do we.
            out, probs = self._lea_attend(
                q,
                k,
                v,
                attention_mask,
                head_mask,
                self.dropout,
                d,
                use_sdpa=True,
                output_attentions=bool(output_attentions),
            )
        else:
            out, probs = self._lea_attend(q, k, v, attention_mask, head_mask, self.dropout, d)
        return _merge_heads(out, self.all_head_size), probs


class LeaBertSelfAttention(_LeaBertForward, BertSelfAttention):
    """BERT eager self-attention plus the LEA bias; returns ``(context, probs)`` like HF 4.57."""


class LeaBertSdpaSelfAttention(_LeaBertForward, BertSdpaSelfAttention):
    """BERT SDPA self-attention plus the LEA bias as a float ``attn_mask``; returns ``(out, None)``."""

    _lea_sdpa = True


class LeaMPNetSelfAttention(_LeaAttentionMixin, MPNetSelfAttention):
    """MPNet self-attention: the LEA bias is summed where MPNet adds its relative-position bias.

    Returns ``(o,)`` or ``(o, probs)`` like HF 4.57.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor | None, ...]:
        if not self._lea_active():
            return super().forward(hidden_states, attention_mask, head_mask, position_bias, output_attentions, **kwargs)
        n, d = self.num_attention_heads, self.attention_head_size
        q = _split_heads(self.q(hidden_states), n, d)
        k = _split_heads(self.k(hidden_states), n, d)
        v = _split_heads(self.v(hidden_states), n, d)
        out, probs = self._lea_attend(q, k, v, attention_mask, head_mask, self.dropout, d, position_bias=position_bias)
        o = self.o(_merge_heads(out, self.all_head_size))
        return (o, probs) if output_attentions else (o,)


# Exact-type map: a subclass of an HF attention class we do not know is refused, not guessed.
_LEA_CLASSES: dict[type, type] = {
    BertSelfAttention: LeaBertSelfAttention,
    BertSdpaSelfAttention: LeaBertSdpaSelfAttention,
    MPNetSelfAttention: LeaMPNetSelfAttention,
}
_VANILLA_CLASSES = {lea: vanilla for vanilla, lea in _LEA_CLASSES.items()}


def self_attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The per-layer self-attention modules of a BERT- or MPNet-family model."""
    base: Any = getattr(model, model.base_model_prefix, model)
    layers = base.encoder.layer
    kind = model.config.model_type
    if kind == "mpnet":
        return [layer.attention.attn for layer in layers]
    if kind == "bert":
        return [layer.attention.self for layer in layers]
    raise NotImplementedError(f"LEA supports BERT-family and MPNet models, not {kind!r}")


def install_lea_attention(model: PreTrainedModel, ctx: LeaContext) -> list[int]:
    """Swap the self-attention class of every layer the bias applies to; returns those layers."""
    modules = self_attention_modules(model)
    if ctx.lex.n_layers != len(modules):
        raise ValueError(f"LexicalBias built for {ctx.lex.n_layers} layers, model has {len(modules)}")
    installed = []
    for i, module in enumerate(modules):
        if not ctx.lex.has_layer(i):
            continue
        cls = type(module)
        if cls in _VANILLA_CLASSES:
            raise ValueError(f"layer {i} already has LEA attention installed")
        if cls not in _LEA_CLASSES:
            raise NotImplementedError(f"no LEA attention for {cls.__name__}")
        if getattr(module, "position_embedding_type", "absolute") != "absolute":
            raise NotImplementedError("LEA attention supports absolute position embeddings only")
        module.__class__ = _LEA_CLASSES[cls]
        patched = cast(_LeaAttentionMixin, module)
        patched._lea_ctx = ctx
        patched._lea_layer = i
        installed.append(i)
    return installed


def uninstall_lea_attention(model: PreTrainedModel) -> None:
    """Restore the HF attention classes (the weights never changed)."""
    for module in self_attention_modules(model):
        cls = type(module)
        if cls in _VANILLA_CLASSES:
            module.__class__ = _VANILLA_CLASSES[cls]
            for name in ("_lea_ctx", "_lea_layer"):
                module.__dict__.pop(name, None)


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

    # -- constructors ------------------------------------------------------------------------

    @classmethod
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
        was_training = self.training
        self.eval()
        order = np.argsort([len(it) for it in items], kind="stable")
        out = np.empty(len(items), dtype=np.float32)
        try:
            with autocast(self.precision, self.device):
                for start in range(0, len(items), batch_size):
                    chunk = order[start : start + batch_size]
                    batch = self.collator.pad([items[i] for i in chunk])
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
        was_training = self.training
        self.eval()
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
    "LeaContext",
    "LeaCrossEncoder",
    "LeaOptions",
    "LexicalBias",
    "WordPairBias",
    "install_lea_attention",
    "sinusoidal_table",
    "uninstall_lea_attention",
]
