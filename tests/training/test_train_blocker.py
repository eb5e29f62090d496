"""train_blocker on a tiny synthetic dataset with a tiny random model (fast, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artefacts import read_manifest
from models.bi_encoder import BiEncoder
from training.blocking_tasks import build_blocking_task, record_text
from training.cli import load_model_folder
from training.data.records import Pair, PairDataset, Record
from training.train_blocker import train_blocker

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
NOUNS = ["camera", "laptop", "router", "monitor", "speaker", "printer"]
COLOURS = ["red", "black", "silver", "white"]


def synthetic_dataset(n_products: int = 24) -> PairDataset:
    """Left/right offers of ``n_products`` products; products split 2:1:1 into train/valid/test."""
    left: dict[str, Record] = {}
    right: dict[str, Record] = {}
    for i in range(n_products):
        brand, noun, colour = BRANDS[i % 6], NOUNS[(i // 2) % 6], COLOURS[i % 4]
        code = f"{brand[:2]}{100 + 17 * i}"
        left[str(i)] = Record(str(i), {"title": f"{brand} {noun} {code} {colour}"}, source="A")
        right[str(i)] = Record(str(i), {"title": f"{code} {brand} {colour} {noun} new"}, source="B")
    splits: dict[str, list[Pair]] = {"train": [], "valid": [], "test": []}
    for i in range(n_products):
        split = "train" if i % 4 < 2 else ("valid" if i % 4 == 2 else "test")
        splits[split].append(Pair(left[str(i)], right[str(i)], 1))
        for j in (i + 1, i + 2):  # near neighbours as labelled negatives
            splits[split].append(Pair(left[str(i)], right[str(j % n_products)], 0))
    return PairDataset(
        name="synthetic",
        format="deepmatcher",
        splits=splits,
        left_table=left,
        right_table=right,
        attributes=["title"],
    )


def tiny_model() -> BiEncoder:
    torch.manual_seed(0)
    return BiEncoder.from_config(TINY, max_length=32)


FAST = {
    "anchors_per_batch": 4,
    "neighbour_k": 4,
    "max_valid_queries": None,
    "encode_batch_size": 32,
}


def test_trains_saves_and_reloads(tmp_path: Path) -> None:
    dataset = synthetic_dataset()
    model = tiny_model()
    out = tmp_path / "blocker"
    metrics = train_blocker(
        dataset,
        out,
        backbone=model,
        loss="block-scl",
        epochs=3,
        batch_size=16,
        lr=1e-3,
        seed=1,
        max_length=32,
        hard_negatives=2,
        progress=False,
        **FAST,
    )
    # Folder: safetensors weights, tokenizer, manifest; no pickles.
    assert (out / "model.safetensors").is_file() and (out / "manifest.json").is_file()
    assert not list(out.glob("*.bin"))
    manifest = read_manifest(out)
    assert manifest.kind == "bi-encoder"
    assert manifest.training_data_sha256 == dataset.fingerprint()
    for key in (
        "loss",
        "seed",
        "fields",
        "epochs",
        "batch_size",
        "lr",
        "max_length",
        "temperature",
        "anchors_per_batch",
        "offers_per_anchor",
        "hard_negatives",
        "weight_decay",
        "warmup_ratio",
    ):
        assert key in manifest.settings
    assert manifest.settings["loss"] == "block-scl" and manifest.settings["seed"] == 1
    assert manifest.settings["fields"] == ["title"]
    json.dumps(manifest.metrics)  # plain JSON

    # Metrics: per-epoch history with validation recall, best epoch chosen among them.
    assert len(metrics["history"]) == 3
    assert 1 <= metrics["best_epoch"] <= 3
    for k in (1, 5, 10, 20, 50):
        assert 0.0 <= metrics["valid"][f"recall@{k}"] <= 1.0
    losses = [h["loss"] for h in metrics["history"]]
    assert all(np.isfinite(losses))
    # Learning happens: the loss goes down, or validation recall does not get worse.
    mean = lambda m: np.mean([m[f"recall@{k}"] for k in (1, 5, 10)])  # noqa: E731
    assert losses[-1] < losses[0] or mean(metrics["valid"]) >= mean(metrics["valid_zero_shot"])

    # The saved folder loads back and encodes exactly like the trained (best-epoch) model.
    loaded, loaded_manifest = load_model_folder(out)
    assert loaded.max_length == 32 and loaded_manifest.settings["max_length"] == 32
    texts = [record_text(r, ["title"]) for r in dataset.right_table.values()]
    np.testing.assert_allclose(loaded.encode(texts), model.encode(texts), atol=1e-5)


def test_mnrl_runs(tmp_path: Path) -> None:
    metrics = train_blocker(
        synthetic_dataset(),
        tmp_path / "mnrl",
        backbone=tiny_model(),
        loss="mnrl",
        epochs=1,
        batch_size=8,
        lr=1e-3,
        seed=0,
        max_length=32,
        progress=False,
        typo_augment=0.5,
        **FAST,
    )
    assert metrics["train_rows"] == 12 and metrics["history"][0]["loss"] is not None
    settings = read_manifest(tmp_path / "mnrl").settings
    assert settings["loss"] == "mnrl" and settings["typo_augment"] == 0.5


def test_same_seed_same_result(tmp_path: Path) -> None:
    def run(name: str) -> dict:
        return train_blocker(
            synthetic_dataset(),
            tmp_path / name,
            backbone=tiny_model(),
            epochs=1,
            batch_size=16,
            lr=1e-3,
            seed=5,
            max_length=32,
            hard_negatives=2,
            progress=False,
            eval_before_training=False,
            **FAST,
        )

    first, second = run("a"), run("b")
    assert first["history"][0]["loss"] == pytest.approx(second["history"][0]["loss"], rel=1e-6)
    assert first["valid"] == second["valid"]


def test_blocking_task_protocol() -> None:
    dataset = synthetic_dataset()
    task = build_blocking_task(dataset, "test")
    # One query per positive test pair; the corpus is the whole right table.
    assert len(task.queries) == 6 and len(task.corpus) == 24
    for qid, targets in zip(task.query_ids, task.query_targets):
        assert [task.corpus_ids[t] for t in targets] == [qid]
    # Noise touches the queries only, reproducibly (typo-v1 with Random(seed*7919 + i)).
    assert task.noisy_queries(1) == task.noisy_queries(1) != task.noisy_queries(2)
    assert task.noisy_queries(1) != task.queries


def test_blocking_task_copies_and_components() -> None:
    """WDC-Block-style quirks: the query's own copy in the corpus, several offers per product."""
    left = {"0": Record("0", {"title": "acme camera x1"}, source="A")}
    right = {
        "0": Record("0", {"title": "acme camera x1"}, source="B"),  # the same offer, listed twice
        "1": Record("1", {"title": "camera x1 by acme"}, source="B"),
        "2": Record("2", {"title": "acme x1 digital camera"}, source="B"),
        "3": Record("3", {"title": "globex phone"}, source="B"),
    }
    pairs = [Pair(left["0"], right["1"], 1), Pair(left["0"], right["2"], 1), Pair(left["0"], right["3"], 0)]
    dataset = PairDataset("tiny-block", "wdc-block", {"valid": pairs}, left, right, ["title"])
    task = build_blocking_task(dataset, "valid")
    # One query per positive pair; both offers of the product count for each; the copy is skipped.
    assert len(task.queries) == 2
    assert task.query_targets == [{1, 2}, {1, 2}]
    assert task.query_exclude == [{0}, {0}]
    plain = build_blocking_task(dataset, "valid", widen_components=False, exclude_copies=False)
    assert plain.query_targets == [{1}, {2}] and plain.query_exclude == [set(), set()]


def test_weight_interpolation_with_the_start_model(tmp_path: Path) -> None:
    """WiSE-FT: every alpha is scored on validation; alpha 0 reproduces the starting weights."""
    dataset = synthetic_dataset()
    start = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    common = (
        dict(
            loss="block-scl", epochs=1, batch_size=16, lr=1e-3, seed=1, max_length=32, hard_negatives=2, progress=False
        )
        | FAST
    )
    metrics = train_blocker(
        dataset, tmp_path / "mix", backbone=tiny_model(), interpolation_alphas=(0.0, 0.5, 1.0), **common
    )
    grid = metrics["interpolation"]["grid"]
    assert [g["alpha"] for g in grid] == [0.0, 0.5, 1.0]
    chosen = metrics["interpolation"]["alpha"]
    best = max(g["selection"] for g in grid)
    assert next(g for g in grid if g["alpha"] == chosen)["selection"] == best
    assert metrics["valid"] == next(g for g in grid if g["alpha"] == chosen)["valid"]

    only_start = train_blocker(
        dataset, tmp_path / "start", backbone=tiny_model(), interpolation_alphas=(0.0,), **common
    )
    assert only_start["interpolation"]["alpha"] == 0.0
    saved, _ = load_model_folder(str(tmp_path / "start"))
    for key, value in saved.state_dict().items():
        if value.is_floating_point() and key in start:
            assert torch.allclose(value, start[key], atol=1e-6), key

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_blocker(dataset, tmp_path / "bad", backbone=tiny_model(), interpolation_alphas=(1.5,), **common)
