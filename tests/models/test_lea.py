"""LEA cross-encoder: exactness when the bias is off, bias placement, gamma, persistence."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    MPNetConfig,
    MPNetForSequenceClassification,
)

from models.backbones import minilm_path
from models.lea import LEA_CONFIG, LEA_WEIGHTS, LeaCrossEncoder
from models.lea_attention import LexicalBias, install_lea_attention, uninstall_lea_attention

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    # Large enough that random-init logits react visibly to the attention pattern.
    "initializer_range": 0.2,
}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
PAIRS = [
    ("Micrwave oven 20L stainless steel", "Microwave Oven 20 L"),
    ("apple ipad air 64gb space grey", "Apple iPad Air (64 GB) - Space Gray"),
    ("samsung galaxy tab s9", "Lenovo thinkpad x1 carbon laptop 14 inch"),
]


def tiny(lea: bool = True, attn: str = "eager", **options) -> LeaCrossEncoder:
    torch.manual_seed(0)
    return LeaCrossEncoder.from_config(TINY, lea=lea, attn_implementation=attn, **options)


def vanilla_copy(model: LeaCrossEncoder) -> torch.nn.Module:
    """The same HF weights with the original attention classes."""
    plain = copy.deepcopy(model.model)
    uninstall_lea_attention(plain)
    return plain.eval()


def vanilla_logits(plain: torch.nn.Module, batch) -> torch.Tensor:
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if batch.token_type_ids is not None and "token_type_ids" in inspect.signature(plain.forward).parameters:
        kwargs["token_type_ids"] = batch.token_type_ids
    with torch.no_grad():
        return plain(**kwargs).logits.squeeze(-1)


def unbiased_same_instance(model: LeaCrossEncoder, batch) -> torch.Tensor:
    """Logits of the very same tensors with the HF attention classes restored.

    Two model instances with equal weights can differ by an ulp (allocation alignment picks
    different BLAS kernels), so bit-exactness is checked on one instance.
    """
    uninstall_lea_attention(model.model)
    try:
        return vanilla_logits(model.model, batch)
    finally:
        install_lea_attention(model.model, model._ctx)


def logits(model: LeaCrossEncoder, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.batch_forward(batch)


def mpnet_model() -> LeaCrossEncoder:
    tok = AutoTokenizer.from_pretrained(minilm_path())
    config = MPNetConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_labels=1, **TINY, **NO_DROPOUT)
    torch.manual_seed(0)
    return LeaCrossEncoder(MPNetForSequenceClassification(config), tok).eval()


# -- (1)-(3): exactness with the bias off / zero, difference with it on --------------------------


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bias_off_equals_vanilla_exactly(attn):
    model = tiny(attn=attn)
    batch = model.collator(PAIRS)
    reference = unbiased_same_instance(model, batch)
    model.use_bias = False
    assert torch.equal(logits(model, batch), reference)
    model.use_bias = True
    with torch.no_grad():
        no_lex = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    assert torch.equal(no_lex, reference)
    # and against a separate copy of the weights (ulp-level tolerance, see above)
    torch.testing.assert_close(no_lex, vanilla_logits(vanilla_copy(model), batch), atol=1e-6, rtol=0)


def test_vanilla_class_matches_fresh_hf_model():
    """Reference check against an independently built HF model loading the same state dict."""
    model = tiny()
    hf = AutoModelForSequenceClassification.from_config(model.model.config, attn_implementation="eager")
    hf.load_state_dict(model.model.state_dict())
    batch = model.collator(PAIRS)
    model.use_bias = False
    torch.testing.assert_close(logits(model, batch), vanilla_logits(hf.eval(), batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn,atol", [("eager", 0.0), ("sdpa", 1e-5)])
def test_zero_projection_or_zero_cross_equals_vanilla(attn, atol):
    model = tiny(attn=attn)
    batch = model.collator(PAIRS)
    reference = unbiased_same_instance(model, batch)
    empty = copy.copy(batch)
    empty.lex_cross = torch.zeros_like(batch.lex_cross)
    torch.testing.assert_close(logits(model, empty), reference, atol=atol, rtol=0)
    with torch.no_grad():
        model.lex.proj.zero_()
    torch.testing.assert_close(logits(model, batch), reference, atol=atol, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_nonzero_bias_changes_outputs(attn):
    model = tiny(attn=attn)
    batch = model.collator(PAIRS)
    reference = vanilla_logits(vanilla_copy(model), batch)
    with torch.no_grad():
        model.lex.proj.normal_(0.0, 1.0)
    out = logits(model, batch)
    assert torch.isfinite(out).all()
    assert (out - reference).abs().max() > 1e-4


def test_eager_and_sdpa_agree_with_bias():
    eager, sdpa = tiny(attn="eager"), tiny(attn="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    with torch.no_grad():
        eager.lex.proj.normal_(0.0, 1.0)
        sdpa.lex.proj.copy_(eager.lex.proj)
    batch = eager.collator(PAIRS)
    torch.testing.assert_close(logits(eager, batch), logits(sdpa, batch), atol=1e-5, rtol=1e-5)


# -- (4)-(5): training ------------------------------------------------------------------------


def test_gradients_reach_projections():
    model = tiny()
    batch = model.collator(PAIRS)
    model.train()
    model.batch_forward(batch).sum().backward()
    assert model.lex.proj.grad is not None and model.lex.proj.grad.abs().sum() > 0
    assert model.lex.table.grad is None  # fixed sinusoidal table is a buffer


def test_bias_gradient_equals_the_embedding_gather_gradient():
    """The bins lookup's scatter-add backward is the gather's gradient."""
    from models.lea_attention import _BinLookup

    torch.manual_seed(0)
    idx = torch.randint(0, 51, (3, 7, 7))
    grads = [torch.randn(3, 7, 7, 4) for _ in range(2)]
    tables = [torch.randn(51, 4, requires_grad=True) for _ in range(2)]
    for table, grad in zip(tables, grads):  # two "layers" of one batch
        _BinLookup.apply(table, idx).backward(grad)
    for table, grad in zip(tables, grads):
        reference = table.detach().clone().requires_grad_()
        torch.nn.functional.embedding(idx, reference).backward(grad)
        assert torch.allclose(table.grad, reference.grad, atol=1e-5)


def test_learnable_embedding_gets_gradients():
    model = tiny(learnable=True)
    model.train()
    model.batch_forward(model.collator(PAIRS)).sum().backward()
    assert model.lex.emb.weight.grad.abs().sum() > 0
    assert model.n_lea_parameters() == 2 * 2 * 50 + 50 * 50


def test_gamma_set_once_on_first_training_forward():
    torch.manual_seed(0)
    model = LeaCrossEncoder.from_config({**TINY, **NO_DROPOUT}, attn_implementation="eager")
    batch = model.collator(PAIRS)
    lex = model.lex
    captured: dict[str, torch.Tensor] = {}
    attn0 = model.model.bert.encoder.layer[0].attention.self
    handle = attn0.register_forward_pre_hook(lambda m, args: captured.setdefault("h", args[0].detach()))

    logits(model, batch)  # eval: gamma untouched
    assert not lex.gamma_set.any() and torch.equal(lex.gamma, torch.ones(2))
    captured.clear()
    model.train()
    model.use_bias = False
    model.batch_forward(batch)  # training but no bias: gamma untouched
    assert not lex.gamma_set.any()
    model.use_bias = True
    captured.clear()
    model.batch_forward(batch)
    handle.remove()
    assert lex.gamma_set.all()

    # layer 0 by hand: mean over batch, heads, real tokens i of max over real j of <q_i, q_j>
    q = attn0.query(captured["h"])
    b, seq, _ = q.shape
    q = q.view(b, seq, 2, 16).transpose(1, 2)
    dots = q @ q.transpose(-1, -2)
    valid = batch.attention_mask.bool()
    dots = dots.masked_fill(~valid[:, None, None, :], float("-inf")).amax(-1)
    expected = dots.permute(0, 2, 1)[valid].mean()
    torch.testing.assert_close(lex.gamma[0], expected, rtol=1e-5, atol=1e-6)

    frozen = lex.gamma.clone()
    model.batch_forward(model.collator(PAIRS[:1]))
    assert torch.equal(lex.gamma, frozen)
    assert "gamma" in lex.state_dict() and "gamma_set" in lex.state_dict()


def test_gamma_off_keeps_one():
    model = tiny(auto_gamma=False)
    model.train()
    model.batch_forward(model.collator(PAIRS))
    assert torch.equal(model.lex.gamma, torch.ones(2))


# -- (6): persistence -------------------------------------------------------------------------


def test_save_load_round_trip_without_pickle(tmp_path, monkeypatch):
    model = tiny(layers=[0], heads=1, learnable=True)
    model.train()
    model.batch_forward(model.collator(PAIRS))  # sets gamma
    model.eval()
    with torch.no_grad():
        model.lex.proj.normal_(0.0, 0.5)
    batch = model.collator(PAIRS)
    before = logits(model, batch)
    model.save(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {LEA_CONFIG, LEA_WEIGHTS, "model.safetensors", "config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = LeaCrossEncoder.load(tmp_path, attn_implementation="eager")
    assert loaded.options == model.options
    assert torch.equal(loaded.lex.gamma, model.lex.gamma) and loaded.lex.gamma_set.all()
    torch.testing.assert_close(logits(loaded, batch), before, atol=1e-6, rtol=0)
    assert not torch.allclose(logits(loaded, batch), unbiased_same_instance(loaded, batch))  # bias is live
    # from_pretrained on a saved LEA folder delegates to load
    again = LeaCrossEncoder.from_pretrained(str(tmp_path), attn_implementation="eager")
    torch.testing.assert_close(logits(again, batch), before, atol=1e-6, rtol=0)


def test_saved_folder_loads_as_vanilla_hf(tmp_path):
    model = tiny()
    model.save(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager")
    batch = model.collator(PAIRS)
    model.use_bias = False
    torch.testing.assert_close(vanilla_logits(plain.eval(), batch), logits(model, batch), atol=1e-6, rtol=0)


# -- (7): layer / head selection --------------------------------------------------------------


def _attention_probs(model: torch.nn.Module, run) -> dict[int, torch.Tensor]:
    """Per-layer attention probabilities (eager modules return them as output[1])."""
    probs: dict[int, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(model.bert.encoder.layer):
        handles.append(layer.attention.self.register_forward_hook(lambda m, a, out, i=i: probs.__setitem__(i, out[1])))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return probs


def test_bias_only_in_selected_layers_and_heads():
    model = tiny(layers=[1], heads=[0])
    assert model.lea_layers == [1]
    assert model.n_lea_parameters() == 1 * 1 * 50
    with torch.no_grad():
        model.lex.proj.normal_(0.0, 1.0)
    batch = model.collator(PAIRS)
    with_bias = _attention_probs(model.model, lambda: logits(model, batch))
    without = _attention_probs(model.model, lambda: unbiased_same_instance(model, batch))
    assert torch.equal(with_bias[0], without[0])  # layer 0 untouched
    assert torch.equal(with_bias[1][:, 1], without[1][:, 1])  # head 1 of layer 1 untouched
    assert not torch.allclose(with_bias[1][:, 0], without[1][:, 0])  # head 0 of layer 1 biased

    idx = model.lex.mask_index(batch.lex_idx, batch.lex_cross, model.lex.n_bins)
    bias = model.lex.bias(1, idx)
    assert bias.shape == (len(PAIRS), 2, *batch.lex_idx.shape[1:])
    assert not bias[:, 1].any() and bias[:, 0].abs().sum() > 0
    assert not bias[:, 0][~batch.lex_cross].any()
    assert not model.lex.has_layer(0)


def test_first_n_heads_and_parameter_count():
    model = tiny(heads=1)
    assert model.lex.heads == [0]
    assert LexicalBias(6, 12).proj.numel() == 3600  # MiniLM-L6: 6 layers x 12 heads x 50
    assert sum(p.numel() for p in LexicalBias(6, 12).parameters()) == 3600
    assert tiny(layers=[0, -1]).lea_layers == [0, 1]  # negative indices count from the top
    with pytest.raises(ValueError):
        tiny(layers=[5])


# -- (8): MPNet -------------------------------------------------------------------------------


def test_mpnet_bias_off_zero_and_on():
    model = mpnet_model()
    assert type(model.model.mpnet.encoder.layer[0].attention.attn).__name__ == "LeaMPNetSelfAttention"
    batch = model.collator(PAIRS)  # MiniLM ids; token_type_ids are dropped for MPNet
    reference = unbiased_same_instance(model, batch)
    model.use_bias = False
    assert torch.equal(logits(model, batch), reference)
    model.use_bias = True
    empty = copy.copy(batch)
    empty.lex_cross = torch.zeros_like(batch.lex_cross)
    torch.testing.assert_close(logits(model, empty), reference, atol=1e-5, rtol=0)
    with torch.no_grad():
        model.lex.proj.zero_()
    torch.testing.assert_close(logits(model, batch), reference, atol=1e-5, rtol=0)
    with torch.no_grad():
        model.lex.proj.normal_(0.0, 1.0)
    assert (logits(model, batch) - reference).abs().max() > 1e-4
    model.train()
    model.batch_forward(batch).sum().backward()
    assert model.lex.proj.grad.abs().sum() > 0 and model.lex.gamma_set.all()


def test_mpnet_from_config_model_type():
    model = LeaCrossEncoder.from_config(TINY, model_type="mpnet")
    assert model.model.config.model_type == "mpnet"
    assert model.predict_logits(PAIRS, batch_size=2).shape == (3,)


# -- conveniences -----------------------------------------------------------------------------


def test_predict_logits_matches_forward_and_explain():
    model = tiny()
    batch = model.collator(PAIRS)
    direct = logits(model, batch).numpy()
    pred = model.predict_logits(PAIRS, batch_size=2)
    assert pred.shape == (3,)
    torch.testing.assert_close(torch.from_numpy(pred), torch.from_numpy(direct), atol=1e-5, rtol=1e-5)

    rows = model.explain(PAIRS[0], top=4)
    assert len(rows) == 4
    assert [r.bias for r in rows] == sorted((r.bias for r in rows), reverse=True)
    assert all(0.0 <= r.similarity <= 1.0 for r in rows)
    ratios = model.bias_ratios(batch)
    assert set(ratios) == {0, 1} and all(v > 0 for v in ratios.values())


def test_vanilla_variant_has_no_lex():
    model = tiny(lea=False)
    assert model.lex is None and model.n_lea_parameters() == 0
    assert type(model.model.bert.encoder.layer[0].attention.self).__name__ == "BertSelfAttention"
    batch = model.collator(PAIRS)
    assert not batch.lex_cross.any()
    assert logits(model, batch).shape == (3,)


def test_gradient_checkpointing_refused():
    model = tiny()
    model.model.gradient_checkpointing_enable()
    model.train()
    with pytest.raises(NotImplementedError):
        model.batch_forward(model.collator(PAIRS))


# -- (9): packaged MiniLM -----------------------------------------------------------------------


@pytest.mark.integration
def test_minilm_lea_off_equals_vanilla():
    model = LeaCrossEncoder.from_pretrained("minilm")
    assert model.n_lea_parameters() == 3600
    plain = vanilla_copy(model)
    pairs = [
        (f"{brand} {item} {n}gb model x{n}", f"{brand.upper()} {item[:-1]} {n} GB x{n}")
        for brand, item, n in zip(
            ["sony", "apple", "samsung", "lenovo", "dell"] * 2,
            ["headphones", "ipad", "galaxy", "thinkpad", "monitor"] * 2,
            range(10),
            strict=True,
        )
    ]
    batch = model.collator(pairs)
    reference = vanilla_logits(plain, batch)
    model.use_bias = False
    off = logits(model, batch)
    torch.testing.assert_close(off, reference, atol=1e-6, rtol=0)
    assert torch.equal(off, unbiased_same_instance(model, batch))
    model.use_bias = True
    on = logits(model, batch)
    assert torch.isfinite(on).all() and not torch.equal(on, reference)


def test_last_layer_bias_cannot_reach_the_cls_head():
    """[CLS] is special, so its attention row carries no bias; BERT's head reads only [CLS] of
    the last layer, hence a last-layer-only bias leaves the logit unchanged (by construction)."""
    model = tiny(layers=[1])
    with torch.no_grad():
        model.lex.proj.normal_(0.0, 1.0)
    batch = model.collator(PAIRS)
    assert torch.equal(logits(model, batch), unbiased_same_instance(model, batch))


@pytest.mark.parametrize("lea", [True, False])
def test_inference_pads_to_a_multiple_of_eight_without_changing_logits(
    lea: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.lea as lea_module

    model = tiny(lea=lea).eval()
    items = model.collator.encode(PAIRS)
    longest = max(len(it) for it in items)
    batch = model.collator.pad(items, multiple_of=8)
    assert batch.input_ids.shape[1] == -(-longest // 8) * 8
    assert batch.lex_idx.shape[1:] == (batch.input_ids.shape[1],) * 2
    assert model.collator.pad(items).input_ids.shape[1] == longest
    with pytest.raises(ValueError, match="multiple_of"):
        model.collator.pad(items, multiple_of=0)
    padded = model.predict_logits(PAIRS)  # a request-sized batch: padded to a multiple of 8
    monkeypatch.setattr(lea_module, "pad_multiple", lambda n: 1)
    torch.testing.assert_close(
        torch.from_numpy(padded), torch.from_numpy(model.predict_logits(PAIRS)), atol=1e-5, rtol=0
    )


def test_padding_to_a_multiple_stops_at_the_maximum_length() -> None:
    model = tiny(max_length=20)
    items = model.collator.encode([("a " * 50, "b " * 50)])
    assert max(len(it) for it in items) == 20
    assert model.collator.pad(items, multiple_of=8).input_ids.shape[1] == 20
