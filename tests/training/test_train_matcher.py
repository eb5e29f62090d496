"""train_matcher on a tiny synthetic dataset with a tiny random model: folder, reload, DA, seeds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from models.artefacts import ManifestError, read_manifest, write_manifest
from models.calibration import Calibrator
from models.lexical import LeaCollator
from training.data.records import Pair, PairDataset, Record
from training.data.serialize import serialize
from training.matcher_io import load_matcher, score_pairs
from training.train_matcher import pos_weight_for, subsample, train_matcher

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
THINGS = ["microwave", "toaster", "television", "headphones", "keyboard", "camera", "speaker"]
COLOURS = ["black", "silver", "white", "red"]


def tiny_dataset(n_train: int = 48, n_valid: int = 24, n_test: int = 24, seed: int = 0) -> PairDataset:
    """Products as ``brand thing model colour``; matches are re-worded copies, non-matches others.

    One third of the pairs match, roughly like the benchmarks' class balance but denser.
    """
    rng = random.Random(seed)
    catalogue = [
        (b, t, f"{rng.choice('abcxyz')}{rng.randint(100, 999)}", c)
        for b in BRANDS
        for t in THINGS
        for c in COLOURS[:1]
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


def _train(tmp: Path, arch: str, augment: str | None = None, seed: int = 3, epochs: int = 2, **kw):
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


@pytest.mark.parametrize("arch", ["lea", "vanilla"])
def test_train_writes_a_loadable_folder_that_scores_identically(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted: dict[str, np.ndarray] = {}
    original_fit = Calibrator.fit.__func__  # type: ignore[attr-defined]

    def spy_fit(cls, logits, labels, method="temperature", bias=True):  # noqa: ANN001
        fitted["logits"] = np.array(logits, copy=True)
        return original_fit(cls, logits, labels, method, bias)

    monkeypatch.setattr(Calibrator, "fit", classmethod(spy_fit))
    folder = tmp_path / arch
    summary = _train(folder, arch, augment="typo" if arch == "lea" else None)

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
    assert cal["threshold"] == summary["threshold"]

    model, calibrator, cal2, manifest2 = load_matcher(folder)
    assert cal2 == cal and manifest2.kind == "matcher"
    assert (model.lex is not None) == (arch == "lea")
    valid = [(serialize(p.left), serialize(p.right)) for p in tiny_dataset().splits["valid"]]
    logits, probs = score_pairs(model, calibrator, valid, batch_size=5)
    # The reloaded model reproduces the best epoch's validation logits, the ones calibrated on.
    np.testing.assert_allclose(logits, fitted["logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(probs, calibrator.apply(logits))
    labels = np.array([p.label for p in tiny_dataset().splits["valid"]])
    chosen = probs >= cal["threshold"]
    tp = int((chosen & (labels == 1)).sum())
    f1 = 2 * tp / (chosen.sum() + labels.sum())
    assert f1 == pytest.approx(cal["valid"]["best_f1"]["f1"])


def test_same_seed_same_model(tmp_path: Path) -> None:
    a = _train(tmp_path / "a", "lea", augment="typo", seed=5, epochs=1)
    b = _train(tmp_path / "b", "lea", augment="typo", seed=5, epochs=1)
    assert a["history"][0]["loss"] == b["history"][0]["loss"]
    assert a["threshold"] == b["threshold"]
    ma, ca, _, _ = load_matcher(tmp_path / "a")
    mb, cb, _, _ = load_matcher(tmp_path / "b")
    pairs = [("acme microwave x123 black", "Acme X123 microwave - black edition")]
    np.testing.assert_array_equal(score_pairs(ma, ca, pairs)[0], score_pairs(mb, cb, pairs)[0])


@pytest.mark.parametrize("augment", ["typo", None])
def test_typo_augmentation_reaches_the_collator(
    augment: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_train: list[tuple[str, str]] = []
    seen_eval: list[tuple[str, str]] = []
    original = LeaCollator.__call__

    def spy(self, pairs, labels=None):  # noqa: ANN001
        (seen_train if labels is not None else seen_eval).extend((p[0], p[1]) for p in pairs)
        return original(self, pairs, labels)

    monkeypatch.setattr(LeaCollator, "__call__", spy)
    _train(tmp_path / "m", "lea", augment=augment, epochs=1)
    ds = tiny_dataset()
    clean_texts = {serialize(r) for p in ds.splits["train"] for r in (p.left, p.right)}
    valid_texts = {(serialize(p.left), serialize(p.right)) for p in ds.splits["valid"]}
    noised = [t for pair in seen_train for t in pair if t not in clean_texts]
    assert len(seen_train) == len(ds.splits["train"])
    if augment == "typo":
        # Half the sides are noised, and most noised titles (4-5 eligible words) change.
        assert 0.25 * len(seen_train) * 2 < len(noised) < 0.75 * len(seen_train) * 2
    else:
        assert noised == []
    assert set(seen_eval) <= valid_texts  # validation is never augmented


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


def test_load_matcher_refuses_pickles_and_other_kinds(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _train(folder, "vanilla", epochs=1)
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ManifestError):
        load_matcher(folder)
    (folder / "pytorch_model.bin").unlink()
    manifest = read_manifest(folder)
    manifest.kind = "bi-encoder"
    write_manifest(folder, manifest)
    with pytest.raises(ManifestError):
        load_matcher(folder)
