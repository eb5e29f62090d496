"""A fused bf16 inference forward of a BERT encoder, for the served bi-encoder on a CPU.

The Hugging Face forward under bf16 autocast spends much of a batch of short titles outside the
matrix products: the three attention projections run as three products, every Linear reorders
its weight for oneDNN and copies its bias, the GELU makes a pass of its own, and SDPA builds a
float mask. This forward computes the same function of the same weights with:

* one packed product for Q, K and V (their weights concatenated), and packed products with the
  GELU in the epilogue for the feed-forward (:mod:`models.packed_linear`);
* SDPA with a boolean key mask, or none when the batch has no padding;
* the residual stream, the LayerNorms and the embeddings in fp32, as autocast keeps them, so its
  vectors stay as close to fp32 as the autocast path's (minimum cosine 0.99998 against fp32 on
  1,000 catalogue titles, `docs/benchmarks.md`).

Its vectors still differ from the autocast path's in the last bf16 bits (the GELU reads the fp32
accumulator, not a rounded product), so the serving encoder tags them apart
(``BiEncoder.vector_kind``) and a catalogue embedded the other way is re-embedded, never mixed.
Inference only: the weights are frozen copies, and training keeps the Hugging Face modules.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.packed_linear import PackedLinear, is_exact_gelu

SUPPORTED_MODEL_TYPES = ("bert",)


def fused_bert_unsupported(backbone: Any) -> str | None:
    """Why ``backbone`` cannot run :class:`FusedBertEncoder` (None when it can)."""
    config = getattr(backbone, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {SUPPORTED_MODEL_TYPES}"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "a decoder or cross-attention BERT"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position embeddings {config.position_embedding_type!r} (only absolute)"
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if not layers:
        return "no encoder layers"
    if not all(is_exact_gelu(layer.intermediate.intermediate_act_fn) for layer in layers):
        return f"activation {config.hidden_act!r} (only the exact GELU)"
    return None


class _FusedLayer(nn.Module):
    def __init__(self, layer: Any, heads: int) -> None:  # a transformers BertLayer
        super().__init__()
        attn = layer.attention
        q, k, v = attn.self.query, attn.self.key, attn.self.value
        self.qkv = PackedLinear(
            torch.cat([q.weight, k.weight, v.weight]),
            torch.cat([q.bias, k.bias, v.bias]) if q.bias is not None else None,
        )
        self.attn_out = PackedLinear.from_linear(attn.output.dense)
        self.attn_norm = attn.output.LayerNorm
        self.ffn_in = PackedLinear.from_linear(layer.intermediate.dense, "gelu")
        self.ffn_out = PackedLinear.from_linear(layer.output.dense)
        self.ffn_norm = layer.output.LayerNorm
        self.heads = heads

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: (B, L, H) fp32 residual stream; ``key_mask``: (B, 1, 1, L) bool, True = attend."""
        b, n, h = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        ctx = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=key_mask)
        ctx = ctx.transpose(1, 2).reshape(b, n, h)
        x = self.attn_norm(self.attn_out(ctx).float() + x)
        return self.ffn_norm(self.ffn_out(self.ffn_in(x)).float() + x)


class FusedBertEncoder(nn.Module):
    """``last_hidden_state`` (fp32) of a Hugging Face ``BertModel``, computed with packed bf16 products.

    Built from a loaded backbone (its weights are copied into bf16 packed layers; the embeddings
    and LayerNorms are shared with it). Position ids are 0..L-1 and token types all 0, as the
    bi-encoder feeds single texts.
    """

    def __init__(self, backbone: Any) -> None:  # a transformers BertModel
        super().__init__()
        reason = fused_bert_unsupported(backbone)
        if reason is not None:
            raise ValueError(f"cannot fuse this backbone: {reason}")
        heads = int(backbone.config.num_attention_heads)
        self.embeddings = backbone.embeddings
        self.layers = nn.ModuleList(_FusedLayer(layer, heads) for layer in backbone.encoder.layer)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The backbone's embeddings (fp32), equal to its own forward's: the token-type and position
        rows are added by broadcasting instead of looked up once per token (3 % of a batch)."""
        emb = self.embeddings
        x = nn.functional.embedding(input_ids, emb.word_embeddings.weight) + emb.token_type_embeddings.weight[0]
        x = x + emb.position_embeddings.weight[: input_ids.shape[1]]
        return emb.LayerNorm(x).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        keep = attention_mask.bool()
        key_mask = None if bool(keep.all()) else keep[:, None, None, :]
        for layer in self.layers:
            x = layer(x, key_mask)
        return x


__all__ = ["SUPPORTED_MODEL_TYPES", "FusedBertEncoder", "fused_bert_unsupported"]
