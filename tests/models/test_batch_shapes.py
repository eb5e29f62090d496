"""Request-sized batches pad to a multiple of 8 tokens; bulk batches keep their own length."""

from __future__ import annotations

from models.batch_shapes import REQUEST_BATCH_MAX, pad_multiple
from models.lea import LeaCrossEncoder
from tests.conftest import TINY_CONFIG


def test_only_request_sized_batches_are_padded_further() -> None:
    assert pad_multiple(1) == pad_multiple(REQUEST_BATCH_MAX) == 8
    assert pad_multiple(REQUEST_BATCH_MAX + 1) == pad_multiple(64) == 1


def test_a_cross_encoder_pads_request_batches_and_not_bulk_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model = LeaCrossEncoder.from_config(TINY_CONFIG, lea=True, max_length=64)
    widths: list[int] = []
    pad = model.collator.pad
    monkeypatch.setattr(
        model.collator,
        "pad",
        lambda items, **kw: widths.append(pad(items, **kw).input_ids.shape[1]) or pad(items, **kw),
    )
    pairs = [("acme widget 3", "acme widget model 3 blue")] * 40
    model.predict_logits(pairs[:5], batch_size=64)
    model.predict_logits(pairs, batch_size=40)
    longest = max(len(it) for it in model.collator.encode(pairs[:1]))
    assert widths == [-(-longest // 8) * 8, longest]
