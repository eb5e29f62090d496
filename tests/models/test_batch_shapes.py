"""Request-sized batches pad to a multiple of 8 tokens; bulk batches keep their own length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from models.batch_shapes import REQUEST_BATCH_MAX, pad_multiple
from models.lea import LeaCrossEncoder
from models.lexical import EncodedPair, LexicalBatch
from tests.conftest import TINY_CONFIG


def test_only_request_sized_batches_are_padded_further() -> None:
    assert pad_multiple(1) == pad_multiple(REQUEST_BATCH_MAX) == 8
    assert pad_multiple(REQUEST_BATCH_MAX + 1) == pad_multiple(64) == 1


def test_a_cross_encoder_pads_request_batches_and_not_bulk_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    model = LeaCrossEncoder.from_config(TINY_CONFIG, lea=True, max_length=64)
    widths: list[int] = []
    original = model.collator.pad

    def recording_pad(items: Sequence[EncodedPair], **kwargs: Any) -> LexicalBatch:
        batch = original(items, **kwargs)
        widths.append(batch.input_ids.shape[1])
        return batch

    monkeypatch.setattr(model.collator, "pad", recording_pad)
    pairs = [("acme widget 3", "acme widget model 3 blue")] * 40
    model.predict_logits(pairs[:5], batch_size=64)  # one request-sized batch
    model.predict_logits(pairs, batch_size=40)  # one bulk batch
    longest = max(len(it) for it in model.collator.encode(pairs[:1]))
    assert widths == [-(-longest // 8) * 8, longest]
