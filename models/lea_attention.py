"""LEA's attention: the lexical bias module and the self-attention classes that add it.

The LEA parameters and the patching of a Hugging Face model's self-attention layers, used by
:class:`models.lea.LeaCrossEncoder` (see ``models/lea.py`` for the method):

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
* All LEA parameters live in one :class:`LexicalBias` owned by the cross-encoder (not inside
  the HF model), saved to ``lea.safetensors`` next to the HF weights.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.models.bert.modeling_bert import BertSdpaSelfAttention, BertSelfAttention
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from models.construction import builds_models
from models.lexical import DEFAULT_N_BINS

logger = logging.getLogger(__name__)


# Longest padded pair whose float32 serving attention runs as two matmuls; longer ones use SDPA.
FP32_MATMUL_ATTENTION_MAX_TOKENS = 96


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

    @builds_models
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
        return _BinLookup.apply(table.t().contiguous(), idx).permute(0, 3, 1, 2)

    def inference_bias(self, layer: int, key_masked_idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, H, L, L) bias of ``layer`` with the padding mask folded in, in ``dtype``.

        ``key_masked_idx`` is :meth:`LeaContext.key_masked_index`: column ``n_bins + 1`` of the
        table holds ``dtype``'s lowest value, so padded keys come out masked by the same gather.
        One small lookup in the compute dtype replaces a float32 gather, a strided cast and a
        broadcast add of the mask, the larger part of a served layer's attention time.
        """
        table = self.layer_table(layer)  # (H, N+1)
        table = F.pad(table, (0, 1), value=torch.finfo(dtype).min).to(dtype)
        return F.embedding(key_masked_idx, table.t().contiguous()).permute(0, 3, 1, 2)


class _BinLookup(torch.autograd.Function):
    """``F.embedding(idx, table)`` with a backward that is one ``scatter_add_`` per layer.

    The index has B*L*L entries over only n_bins + 1 rows. torch's embedding backward took
    ~6 ms per layer and step on the 2-core CPU (a sixth of a MiniLM training step); summing the
    head-major gradient into an (H, n_bins + 1) table with ``scatter_add_`` takes ~1 ms.
    """

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]
        return F.embedding(idx, table)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (idx,) = ctx.saved_tensors
        heads = grad.shape[-1]
        # grad is (B, L, L, H), usually a permuted view of a contiguous (B, H, L, L) gradient.
        per_head = grad.permute(3, 0, 1, 2).reshape(heads, -1)
        out = torch.zeros((heads, ctx.n_rows), dtype=grad.dtype, device=grad.device)
        out.scatter_add_(1, idx.reshape(1, -1).expand(heads, -1), per_head)
        return out.t(), None


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
        # Inference through :meth:`_LeaAttentionMixin._lea_attend_inference`; False runs the
        # training path's attention instead, the reference the serving one is checked against.
        self.serving_attention = True
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
        self._local.masked_idx = None

    def clear(self) -> None:
        self._local.idx = None
        self._local.token_mask = None
        self._local.ratios = None
        self._local.masked_idx = None

    def key_masked_index(self) -> torch.Tensor:
        """The bin index with every padding key sent to column ``n_bins + 1`` (see
        :meth:`LexicalBias.inference_bias`); built once per forward and shared by the layers."""
        cached = getattr(self._local, "masked_idx", None)
        if cached is not None:
            return cached
        idx, token_mask = self.idx, self.token_mask
        assert idx is not None
        if token_mask is not None:
            idx = idx.masked_fill(~token_mask.bool()[:, None, :], self.lex.n_bins + 1)
        self._local.masked_idx = idx
        return idx

    def __deepcopy__(self, memo: dict[int, Any]) -> LeaContext:
        out = LeaContext(copy.deepcopy(self.lex, memo))
        out.serving_attention = self.serving_attention
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"lex": self.lex, "serving_attention": self.serving_attention}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lex = state["lex"]
        self.serving_attention = bool(state.get("serving_attention", True))
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
        if ctx.serving_attention and not self.training and head_mask is None and ctx.ratios is None:
            want_probs = not use_sdpa or output_attentions  # what each HF class returns
            return self._lea_attend_inference(q, k, v, position_bias, want_probs=want_probs)
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

    def _lea_attend_inference(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        position_bias: torch.Tensor | None,
        want_probs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Serving's attention: the same function, in plain matmuls, with the mask in the bias.

        At a served pair's 60-128 tokens, torch's CPU flash kernel with a dense float mask is
        slower than two batched matmuls and a softmax in the compute dtype, and the mask costs
        nothing once folded into the bias lookup. Logits move by bf16 rounding only; nothing
        stores them, and training keeps the path above.
        """
        ctx = self._lea_ctx
        assert ctx is not None
        b, h, n, d = q.shape
        bias = ctx.lex.inference_bias(self._lea_layer, ctx.key_masked_index(), q.dtype)
        if position_bias is not None:
            bias = bias + position_bias.to(bias.dtype)
        if q.dtype == torch.float32 and n > FP32_MATMUL_ATTENTION_MAX_TOKENS and not want_probs:
            # In float32 the L x L score matrix's memory traffic outgrows the flash kernel's
            # tiling past about 96 tokens (measured on Zen 4); in bf16 the matmuls win throughout.
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), None
        # One GEMM computes scale * Q K^T + bias: no separate scaling or addition pass.
        scores = torch.baddbmm(
            bias.reshape(b * h, n, n),
            q.reshape(b * h, n, d),
            k.reshape(b * h, n, d).transpose(1, 2),
            alpha=1.0 / math.sqrt(d),
        )
        probs = F.softmax(scores, dim=-1)
        out = torch.bmm(probs, v.reshape(b * h, n, d)).view(b, h, n, d)
        return out, probs.view(b, h, n, n) if want_probs else None


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


__all__ = [
    "LeaContext",
    "LeaOptions",
    "LexicalBias",
    "install_lea_attention",
    "self_attention_modules",
    "sinusoidal_table",
    "uninstall_lea_attention",
]
