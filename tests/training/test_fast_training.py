"""Fast training: encode-once + dynamic padding, length grouping, bf16 autocast, per-epoch resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from models.artefacts import read_manifest
from models.backbones import minilm_path
from models.lexical import LeaCollator, discretise, fill_lexical
from models.matcher_io import load_matcher
from models.precision import PRECISIONS, autocast, bf16_native, resolve_precision
from tests.training.test_train_matcher import TINY, tiny_dataset
from training import checkpoint as checkpoint_module
from training import train_matcher as train_matcher_module
from training.length_grouping import length_grouped_order, padding_share
from training.pseudo_labels import plan_batches
from training.train_matcher import train_matcher

PAIRS = [
    ("Micrwave oven 20L stainless steel", "Microwave Oven 20 L"),
    ("apple ipad air 64gb", "Samsung galaxy tab s9 wifi 128 gb grey"),
    ("x", "a much longer product title with many words to force padding of the others"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


def test_encode_then_pad_equals_the_padded_batch_encoding(tokenizer) -> None:
    """Padding cached per-pair encodings gives exactly the tokenizer's own padded batch."""
    collator = LeaCollator(tokenizer, max_length=24)
    batch = collator.pad(collator.encode(PAIRS), labels=[1.0, 0.0, 0.0])
    ref = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], truncation=True, max_length=24,
                    padding="longest", return_tensors="pt")  # fmt: skip
    assert torch.equal(batch.input_ids, ref["input_ids"])
    assert torch.equal(batch.attention_mask, ref["attention_mask"])
    assert torch.equal(batch.token_type_ids, ref["token_type_ids"])
    # The lexical matrices as the batch-level reference computes them.
    words = collator.words(ref, PAIRS)
    sims = collator.similarities(words)
    seq = ref["input_ids"].shape[1]
    for k in range(len(PAIRS)):
        idx = np.zeros((seq, seq), dtype=np.uint8)
        cross = np.zeros((seq, seq), dtype=bool)
        fill_lexical(idx, cross, words[k], discretise(sims[k], collator.n_bins))
        np.testing.assert_array_equal(batch.lex_idx[k].numpy(), idx)
        np.testing.assert_array_equal(batch.lex_cross[k].numpy(), cross)
    assert batch.lex_cross.any()  # the check above would pass on all-zero matrices too
    assert batch.labels.tolist() == [1.0, 0.0, 0.0]


def test_encoded_pair_keeps_its_texts_and_unpadded_length(tokenizer) -> None:
    collator = LeaCollator(tokenizer, max_length=24, lexical=False)
    items = collator.encode(PAIRS)
    assert [it.texts for it in items] == PAIRS
    assert len(items[0]) < len(items[2]) <= 24
    assert all(it.words is None for it in items)


def test_length_grouping_is_a_permutation_that_cuts_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 64, size=1000).tolist()
    order = length_grouped_order(lengths, 32, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))
    random_order = np.random.default_rng(1).permutation(1000)
    assert padding_share(lengths, order, 32) < 0.1 < padding_share(lengths, random_order, 32)
    # Seeded: same rng seed, same order; the next epoch (same generator) differs.
    again = length_grouped_order(lengths, 32, np.random.default_rng(1))
    np.testing.assert_array_equal(order, again)
    gen = np.random.default_rng(1)
    first, second = length_grouped_order(lengths, 32, gen), length_grouped_order(lengths, 32, gen)
    assert not np.array_equal(first, second)


def test_plan_batches_groups_lengths_only_when_asked() -> None:
    lengths = [5] * 50 + [60] * 50
    plain = plan_batches(100, 0, 10, 1.0, np.random.default_rng(0))
    grouped = plan_batches(100, 0, 10, 1.0, np.random.default_rng(0), lengths)
    mixed = [len({lengths[i] for i in lab}) for lab, _ in grouped]
    assert mixed == [1] * 10
    assert any(len({lengths[i] for i in lab}) == 2 for lab, _ in plain)
    with pytest.raises(ValueError, match="lengths"):
        plan_batches(100, 0, 10, 1.0, np.random.default_rng(0), lengths[:5])


def test_resolve_precision() -> None:
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if bf16_native("cpu") else "fp32")
    assert "auto" in PRECISIONS
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_autocast_runs_matmuls_in_bf16_and_fp32_is_untouched() -> None:
    a = torch.randn(4, 4)
    with autocast("bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (a @ a).dtype == torch.float32
    with pytest.raises(ValueError, match="resolved"):
        with autocast("auto"):
            pass


def _train(tmp: Path, **kw: Any) -> dict[str, Any]:
    return train_matcher(tiny_dataset(), tmp, arch="lea", augment="typo", epochs=3, batch_size=8, seed=5,
                         tiny_config=TINY, max_length=32, progress=False, **kw)  # fmt: skip


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_is_recorded_and_served(tmp_path: Path, precision: str) -> None:
    summary = _train(tmp_path / precision, precision=precision, length_grouping=True)
    manifest = read_manifest(tmp_path / precision)
    assert manifest.settings["precision"] == precision
    assert manifest.settings["length_grouping"] is True
    model, *_ = load_matcher(tmp_path / precision)
    # Served in the precision the calibration was fitted in (fp32 where bf16 is not native).
    assert model.precision == (precision if precision == "fp32" or bf16_native("cpu") else "fp32")
    assert np.isfinite([h["loss"] for h in summary["history"]]).all()


def test_interrupted_run_resumes_to_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed after epoch 1 and started again ends exactly like an uninterrupted run."""
    full = _train(tmp_path / "full", checkpoint_dir=tmp_path / "ckpt-full", precision="fp32")
    assert not (tmp_path / "ckpt-full" / checkpoint_module.CHECKPOINT_FILE).exists()  # removed when done

    class Killed(Exception):
        pass

    saved = checkpoint_module.save_checkpoint

    def save_then_die(*args: Any, **kwargs: Any) -> Path:
        saved(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(train_matcher_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        _train(tmp_path / "resumed", checkpoint_dir=tmp_path / "ckpt", precision="fp32")
    assert (tmp_path / "ckpt" / checkpoint_module.CHECKPOINT_FILE).exists()
    epochs_saved: list[int] = []

    def save_and_count(folder: Path, settings: dict[str, Any], state: dict[str, Any]) -> Path:
        epochs_saved.append(state["epoch"])
        return saved(folder, settings, state)

    monkeypatch.setattr(train_matcher_module, "save_checkpoint", save_and_count)
    resumed = _train(tmp_path / "resumed", checkpoint_dir=tmp_path / "ckpt", precision="fp32")
    assert epochs_saved == [2]  # epoch 1 came from the checkpoint, epoch 3 is the last (no checkpoint)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    assert [h["valid_f1"] for h in resumed["history"]] == [h["valid_f1"] for h in full["history"]]
    assert resumed["threshold"] == full["threshold"]


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    checkpoint_module.save_checkpoint(tmp_path, {"seed": 1}, {"epoch": 1})
    assert checkpoint_module.load_checkpoint(tmp_path, {"seed": 2}) is None
    assert checkpoint_module.load_checkpoint(tmp_path, {"seed": 1}) == {"epoch": 1}
    assert checkpoint_module.load_checkpoint(None, {"seed": 1}) is None
