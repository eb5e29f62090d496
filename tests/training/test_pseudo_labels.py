"""Pseudo-labels: batch plans with a labelled quota, soft labels, the unlabelled pool, the trainer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import training.train_matcher as tm
from models.artefacts import read_manifest
from training.data.readers import load_dataset
from training.pseudo_labels import (
    PseudoLabelConfig,
    confident_mask,
    entropy_penalty,
    labelled_per_batch,
    plan_batches,
    serialize_unlabelled,
    soft_pseudo_labels,
    unlabelled_candidates,
)

from ..conftest import tiny_bi_encoder
from .test_eval_matcher import write_tiny_deepmatcher
from .test_train_matcher import TINY, tiny_dataset


@pytest.mark.parametrize(
    ("n_lab", "n_unl", "batch", "share"),
    [(100, 1000, 32, 0.5), (37, 5000, 32, 0.16), (50, 10, 8, 0.5), (1000, 3, 16, 0.9), (7, 100, 32, 0.5)],
)
def test_every_batch_keeps_the_minimum_labelled_share(n_lab: int, n_unl: int, batch: int, share: float) -> None:
    plan = plan_batches(n_lab, n_unl, batch, share, np.random.default_rng(0))
    labelled = np.concatenate([lab for lab, _ in plan])
    assert sorted(labelled.tolist()) == list(range(n_lab))  # every labelled pair once per epoch
    for lab, unl in plan:
        assert len(lab) + len(unl) <= batch
        assert len(lab) / (len(lab) + len(unl)) >= share
        assert all(0 <= j < n_unl for j in unl)
    used = np.concatenate([unl for _, unl in plan])
    if len(used) >= n_unl:  # drawn from successive permutations: near-equal use
        counts = np.bincount(used, minlength=n_unl)
        assert counts.max() - counts.min() <= 1


def test_without_a_pool_the_plan_is_the_plain_shuffled_epoch() -> None:
    plan = plan_batches(50, 0, 8, 0.5, np.random.default_rng(3))
    order = np.random.default_rng(3).permutation(50)
    assert [lab.tolist() for lab, _ in plan] == [order[i : i + 8].tolist() for i in range(0, 50, 8)]
    assert all(len(unl) == 0 for _, unl in plan)


def test_labelled_quota_is_at_least_the_natural_share() -> None:
    assert labelled_per_batch(900, 100, 32, 0.5) == 29  # natural share 0.9 > minimum
    assert labelled_per_batch(100, 900, 32, 0.5) == 16
    assert labelled_per_batch(100, 900, 100, 0.16) == 16  # the spec's 16 of 100
    assert labelled_per_batch(100, 0, 32, 0.5) == 32


def test_soft_labels_remove_the_pos_weight_shift() -> None:
    logits = np.array([0.0, math.log(4.0), 10.0])
    np.testing.assert_allclose(soft_pseudo_labels(logits), [0.5, 0.8, 1 / (1 + math.exp(-10))])
    np.testing.assert_allclose(soft_pseudo_labels(logits, logit_offset=math.log(4.0))[1], 0.5)
    assert confident_mask(np.array([0.5, 0.6, 0.95, 0.02]), 0.8).tolist() == [False, False, True, True]
    assert confident_mask(np.array([0.5]), 0.0).tolist() == [True]


def test_entropy_penalty_peaks_at_a_coin_flip() -> None:
    assert float(entropy_penalty(torch.zeros(4))) == pytest.approx(math.log(2))
    assert float(entropy_penalty(torch.full((4,), 8.0))) < 0.01


def test_config_building() -> None:
    assert PseudoLabelConfig.build(None) is None and PseudoLabelConfig.build(False) is None
    assert PseudoLabelConfig.build(True) == PseudoLabelConfig()
    assert PseudoLabelConfig.build({"min_labelled_share": 0.3}).min_labelled_share == 0.3
    with pytest.raises(ValueError):
        PseudoLabelConfig(min_labelled_share=0.0)


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory: pytest.TempPathFactory):
    return load_dataset(write_tiny_deepmatcher(tmp_path_factory.mktemp("pool") / "data", seed=4), "deepmatcher")


def test_pool_excludes_labelled_pairs_and_evaluation_records(tiny_tables) -> None:
    ds = tiny_tables
    encoder = tiny_bi_encoder()
    pool = unlabelled_candidates(ds, k=5, encoder=encoder, fields=["name"])
    labelled = {(p.left.id, p.right.id) for pairs in ds.splits.values() for p in pairs}
    eval_left = {p.left.id for s in ("valid", "test") for p in ds.splits[s]}
    eval_right = {p.right.id for s in ("valid", "test") for p in ds.splits[s]}
    assert pool, "the tiny tables leave some unlabelled candidates"
    assert not {(a.id, b.id) for a, b in pool} & labelled
    assert not {a.id for a, _ in pool} & eval_left and not {b.id for _, b in pool} & eval_right
    per_left: dict[str, int] = {}
    for a, _ in pool:
        per_left[a.id] = per_left.get(a.id, 0) + 1
    assert max(per_left.values()) <= 5

    wide = unlabelled_candidates(ds, k=5, encoder=encoder, fields=["name"], transductive=True)
    assert len(wide) > len(pool) and not {(a.id, b.id) for a, b in wide} & labelled
    capped = unlabelled_candidates(ds, k=5, encoder=encoder, fields=["name"], transductive=True, max_pairs=7)
    assert len(capped) == 7 and set(capped) <= set(wide)
    texts = serialize_unlabelled(capped, "title")
    assert len(texts) == 7 and all(isinstance(a, str) and isinstance(b, str) for a, b in texts)


def test_pool_is_empty_without_tables() -> None:
    assert unlabelled_candidates(tiny_dataset(), k=5, encoder=tiny_bi_encoder()) == []


def test_trainer_mixes_pseudo_labelled_pairs_with_the_labelled_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = tiny_dataset(n_train=32)
    pool = [(f"acme gadget {i} black", f"Globex G{i} gadget - black edition") for i in range(40)]
    seen: list[tuple[int, int, torch.Tensor]] = []
    original = tm._batch_loss

    def spy(logits: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.append((kw["n_labelled"], int(logits.shape[0]), targets.detach().clone()))
        return original(logits, targets, **kw)

    monkeypatch.setattr(tm, "_batch_loss", spy)
    summary = tm.train_matcher(
        ds,
        tmp_path / "m",
        arch="vanilla",
        epochs=2,
        batch_size=8,
        seed=2,
        tiny_config=TINY,
        max_length=32,
        progress=False,
        unlabelled_pairs=pool,
        pseudo_label={"warmup_epochs": 1, "min_labelled_share": 0.5},
    )
    first, second = seen[:4], seen[4:]
    assert all(n == size for n, size, _ in first)  # warm-up epoch: labels only
    assert len(second) == 8 and all(n / size >= 0.5 and size > n for n, size, _ in second)
    assert sum(n for n, _, _ in second) == 32  # every labelled pair once
    soft = torch.cat([t[n:] for n, _, t in second])
    assert bool(((soft > 0) & (soft < 1)).all())  # soft targets, not hard labels
    info = summary["pseudo_labels"]
    assert info["pool"] == 40 and [e["epoch"] for e in info["epochs"]] == [2] and info["epochs"][0]["used"] == 40
    manifest = read_manifest(tmp_path / "m")
    assert manifest.settings["pseudo_labels"]["min_labelled_share"] == 0.5
    assert [h["pseudo_labelled"] for h in manifest.metrics["history"]] == [0, 40]
