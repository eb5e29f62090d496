"""train_matcher on a tiny synthetic dataset with a tiny random model: folder, reload, DA, seeds."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.artefacts import ManifestError, read_manifest, write_manifest
from models.calibration import Calibrator
from models.lexical import LeaCollator
from models.matcher_io import load_matcher, score_pairs
from models.product_text import serialize
from training.data.records import Pair, PairDataset, Record
from training.train_matcher import pos_weight_for, subsample, train_matcher

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
THINGS = ["microwave", "toaster", "television", "headphones", "keyboard", "camera", "speaker"]
COLOURS = ["black", "silver", "white", "red"]


def tiny_dataset(n_train: int = 32, n_valid: int = 18, n_test: int = 18, seed: int = 0) -> PairDataset:
    """Products as ``brand thing model colour``; matches are re-worded copies, non-matches others.

    One third of the pairs match, roughly like the benchmarks' class balance but denser.
    """
    rng = random.Random(seed)
    catalogue = [
        (b, t, f"{rng.choice('abcxyz')}{rng.randint(100, 999)}", c) for b in BRANDS for t in THINGS for c in COLOURS[:1]
    ]
    counter = iter(range(10**6))

    def record(title: str, source: str) -> Record:
        rid = str(next(counter))
        return Record(id=rid, fields={"title": title, "price": str(rng.randint(10, 500))}, source=source)

    def split(n: int) -> list[Pair]:
        pairs = []
        for i in range(n):
            b, t, m, c = rng.choice(catalogue)
            left = record(f"{b} {t} {m} {c}", "A")
            if i % 3 == 0:
                right = record(f"{b.title()} {m.upper()} {t} - {c} edition", "B")
                label = 1
            else:
                b2, t2, m2, c2 = rng.choice([p for p in catalogue if p[2] != m])
                right = record(f"{b2.title()} {m2.upper()} {t2} - {c2} edition", "B")
                label = 0
            pairs.append(Pair(left, right, label))
        return pairs

    return PairDataset(
        name="tiny",
        format="synthetic",
        splits={"train": split(n_train), "valid": split(n_valid), "test": split(n_test)},
        attributes=["title", "price"],
    )


def _train(tmp: Path, arch: str, augment: str | None = None, seed: int = 3, epochs: int = 2, **kw: Any):
    return train_matcher(
        tiny_dataset(),
        tmp,
        arch=arch,
        augment=augment,
        epochs=epochs,
        batch_size=8,
        seed=seed,
        tiny_config=TINY,
        max_length=32,
        progress=False,
        **kw,
    )


@dataclass
class Trained:
    """One training run, with what the spies saw: calibrated logits and collator inputs."""

    folder: Path
    summary: dict[str, Any]
    calibrated_logits: np.ndarray
    train_inputs: list[tuple[str, str]] = field(default_factory=list)
    eval_inputs: list[tuple[str, str]] = field(default_factory=list)


def _train_with_spies(folder: Path, arch: str, augment: str | None) -> Trained:
    seen: dict[str, Any] = {"train": [], "eval": []}
    original_fit = Calibrator.fit.__func__  # type: ignore[attr-defined]
    original_pad = LeaCollator.pad

    def spy_fit(cls, logits, labels, method="temperature", bias=True):
        seen["logits"] = np.array(logits, copy=True)
        return original_fit(cls, logits, labels, method, bias)

    def spy_pad(self, items, labels=None, multiple_of=1):
        seen["train" if labels is not None else "eval"].extend(it.texts for it in items)
        return original_pad(self, items, labels, multiple_of=multiple_of)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Calibrator, "fit", classmethod(spy_fit))
        mp.setattr(LeaCollator, "pad", spy_pad)
        summary = _train(folder, arch, augment=augment)
    return Trained(folder, summary, seen["logits"], seen["train"], seen["eval"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    """LEA with typo DA and vanilla without DA, 2 epochs each, trained once for the module."""
    root = tmp_path_factory.mktemp("train-matcher")
    return {
        "lea": _train_with_spies(root / "lea", "lea", "typo"),
        "vanilla": _train_with_spies(root / "vanilla", "vanilla", None),
    }


@pytest.mark.parametrize("arch", ["lea", "vanilla"])
def test_artefact_folder(arch: str, trained: dict[str, Trained]) -> None:
    run = trained[arch]
    folder = run.folder
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "manifest.json", "calibration.json", "lea_config.json"} <= names
    assert ("lea.safetensors" in names) == (arch == "lea")
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)

    manifest = read_manifest(folder)
    assert manifest.kind == "matcher"
    assert manifest.settings["arch"] == arch
    assert manifest.settings["typo_version"] == ("typo-v1" if arch == "lea" else None)
    assert manifest.settings["epochs"] == 2 and manifest.settings["seed"] == 3
    assert manifest.training_data_sha256 == tiny_dataset().fingerprint()
    assert manifest.metrics["best_epoch"] in (1, 2) and len(manifest.metrics["history"]) == 2
    assert 0.0 <= manifest.metrics["valid_f1"] <= 1.0

    cal = json.loads((folder / "calibration.json").read_text())
    assert set(cal["thresholds_for_precision"]) == {"0.9", "0.95", "0.98"}
    assert cal["calibrator"]["method"] == "temperature"
    assert cal["fields"] == "title" and cal["max_length"] == 32
    assert cal["threshold"] == run.summary["threshold"]


@pytest.mark.parametrize("arch", ["lea", "vanilla"])
def test_reloaded_matcher_scores_identically(arch: str, trained: dict[str, Trained]) -> None:
    run = trained[arch]
    model, calibrator, cal, manifest = load_matcher(run.folder)
    assert manifest.kind == "matcher" and (model.lex is not None) == (arch == "lea")
    valid = [(serialize(p.left), serialize(p.right)) for p in tiny_dataset().splits["valid"]]
    # The reloaded model reproduces the best epoch's validation logits, the ones calibrated on,
    # up to round-off (the reloaded HF model may pick another attention kernel; other padding).
    logits, probs = score_pairs(model, calibrator, valid, batch_size=64)
    np.testing.assert_allclose(logits, run.calibrated_logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(score_pairs(model, calibrator, valid, batch_size=5)[0], logits, atol=1e-5)
    np.testing.assert_allclose(probs, calibrator.apply(logits))
    labels = np.array([p.label for p in tiny_dataset().splits["valid"]])
    chosen = probs >= cal["threshold"]
    tp = int((chosen & (labels == 1)).sum())
    assert 2 * tp / (chosen.sum() + labels.sum()) == pytest.approx(cal["valid"]["best_f1"]["f1"])


@pytest.mark.parametrize("arch", ["lea", "vanilla"])
def test_typo_augmentation_reaches_the_collator(arch: str, trained: dict[str, Trained]) -> None:
    run = trained[arch]
    ds = tiny_dataset()
    clean_texts = {serialize(r) for p in ds.splits["train"] for r in (p.left, p.right)}
    valid_texts = {(serialize(p.left), serialize(p.right)) for p in ds.splits["valid"]}
    assert len(run.train_inputs) == 2 * len(ds.splits["train"])  # 2 epochs
    noised = [t for pair in run.train_inputs for t in pair if t not in clean_texts]
    if arch == "lea":  # trained with typo DA
        # Half the sides are noised, and most noised titles (4-5 eligible words) change.
        sides = 2 * len(run.train_inputs)
        assert 0.25 * sides < len(noised) < 0.75 * sides
        first, second = (
            run.train_inputs[: len(ds.splits["train"])],
            run.train_inputs[len(ds.splits["train"]) :],
        )
        assert first != second  # fresh noise (and order) every epoch
    else:
        assert noised == []
    assert run.eval_inputs and set(run.eval_inputs) <= valid_texts  # validation is never augmented


def test_same_seed_same_model(tmp_path: Path, trained: dict[str, Trained]) -> None:
    again = _train(tmp_path / "again", "lea", augment="typo")
    first = trained["lea"].summary
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in first["history"]]
    assert again["threshold"] == first["threshold"]
    ma, ca, _, _ = load_matcher(trained["lea"].folder)
    mb, cb, _, _ = load_matcher(tmp_path / "again")
    pairs = [("acme microwave x123 black", "Acme X123 microwave - black edition")]
    np.testing.assert_array_equal(score_pairs(ma, ca, pairs)[0], score_pairs(mb, cb, pairs)[0])


def test_subsample_and_pos_weight() -> None:
    pairs = [("a", "b", 1 if i % 5 == 0 else 0) for i in range(100)]
    sub = subsample(pairs, 30)
    assert len(sub) == 30 and sum(p[2] for p in sub) == 6
    assert subsample(pairs, 30) == sub  # fixed seed: same subset every time
    assert subsample(pairs, None) is pairs
    assert pos_weight_for([p[2] for p in pairs]) == pytest.approx(2.0)
    assert pos_weight_for([0, 0]) == 1.0


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        _train(tmp_path / "x", "lea", augment="ocr")
    with pytest.raises(ValueError):
        _train(tmp_path / "y", "bert")


def test_load_matcher_refuses_pickles_and_other_kinds(tmp_path: Path, trained: dict[str, Trained]) -> None:
    folder = tmp_path / "m"
    shutil.copytree(trained["vanilla"].folder, folder)
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ManifestError):
        load_matcher(folder)
    (folder / "pytorch_model.bin").unlink()
    manifest = read_manifest(folder)
    manifest.kind = "bi-encoder"
    write_manifest(folder, manifest)
    with pytest.raises(ManifestError):
        load_matcher(folder)
