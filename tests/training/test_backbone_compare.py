"""The backbone comparison trains every arm on identical batches and reports quality and cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bi_encoder
from training.recommend.backbone_compare import Arm, CompareConfig, compare_backbones, encode
from training.recommend.benchmark import load_benchmark

from .test_recommend import make_wdc_folder


def _arm(name: str, lr: float, seen_batches: list[list[str]]) -> Arm:
    model = tiny_bi_encoder()

    def embed(texts):
        if model.training:
            seen_batches.append(list(texts))
        return model(**model.tokenize(texts))

    return Arm(name, model, embed, lr, note=f"tiny {name}")


def test_every_arm_sees_the_same_batches_and_learns(tmp_path: Path) -> None:
    bench = load_benchmark(make_wdc_folder(tmp_path / "wdc"))
    seen: dict[str, list[list[str]]] = {"a": [], "b": []}
    cfg = CompareConfig(epochs=2, batch_size=8, warmup_steps=1, max_test_queries=10, seed=3)
    out = compare_backbones(
        bench,
        {"a": lambda: _arm("a", 1e-3, seen["a"]), "b": lambda: _arm("b", 1e-3, seen["b"])},
        lambda texts: np.random.default_rng(0).normal(size=(len(texts), 4)).astype(np.float32),
        cfg,
    )
    assert out["train_queries"] == len(bench.train) and out["test_queries"] == 10
    assert out["labels"] == bench.n_labels
    assert seen["a"] == seen["b"] and seen["a"], "identical batches (queries then labels) for every arm"
    for name in ("a", "b"):
        arm = out["arms"][name]
        assert arm["steps"] == 2 * len(range(0, len(bench.train), 8))
        assert len(arm["loss_by_epoch"]) == 2 and all(np.isfinite(arm["loss_by_epoch"]))
        assert arm["trainable_parameters"] == arm["parameters"] > 0
        for phase in ("zero_shot", "trained"):
            assert 0.0 <= arm[phase]["p@1"] <= 1.0 and 0.0 <= arm[phase]["r@10"] <= 1.0
            assert arm[phase]["encode_texts_per_s"] > 0
    # Same seed, same init, same batches: the two arms end identically.
    assert out["arms"]["a"]["trained"]["p@1"] == out["arms"]["b"]["trained"]["p@1"]
    assert out["arms"]["a"]["loss_by_epoch"] == out["arms"]["b"]["loss_by_epoch"]


def test_encode_is_unit_norm_and_in_eval_mode() -> None:
    arm = _arm("a", 1e-3, [])
    arm.module.train()
    vecs = encode(arm, ["acme x", "zenit y", "orbit z"], batch_size=2)
    assert vecs.shape[0] == 3 and not arm.module.training
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(vecs[:1]), arm.embed(["acme x"]), atol=1e-5)


@pytest.mark.parametrize("limit", [5, None])
def test_subsampled_training_queries(tmp_path: Path, limit: int | None) -> None:
    bench = load_benchmark(make_wdc_folder(tmp_path / "wdc", 3))
    cfg = CompareConfig(epochs=1, batch_size=4, max_train_queries=limit)
    out = compare_backbones(
        bench, {"a": lambda: _arm("a", 1e-3, [])}, lambda t: np.eye(len(t), 4, dtype=np.float32), cfg
    )
    assert out["train_queries"] == (limit or len(bench.train))
