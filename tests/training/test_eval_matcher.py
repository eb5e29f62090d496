"""evaluate_matcher on a tiny DeepMatcher folder: keys, ranges, deterministic noisy copies."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

import training.eval_matcher as eval_module
from training.data.readers import load_dataset
from training.eval_matcher import evaluate_matcher
from training.train_matcher import train_matcher

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

_BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
_THINGS = ["microwave", "toaster", "television", "headphones", "keyboard", "camera"]


def write_tiny_deepmatcher(folder: Path, seed: int = 0) -> Path:
    """A DeepMatcher folder: tableA/B.csv (id, name, price) and train/valid/test.csv pair files.

    Right records re-word the left ones (brand title-cased, model upper-cased), so a matcher
    can learn something even in a few steps; every third pair of a split is a match.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    products = [(b, t, f"{rng.choice('kmqz')}{rng.randint(100, 999)}") for b in _BRANDS for t in _THINGS]
    with (folder / "tableA.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "price"])
        for i, (b, t, m) in enumerate(products):
            w.writerow([i, f"{b} {t} {m} black", rng.randint(10, 500)])
    with (folder / "tableB.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "price"])
        for i, (b, t, m) in enumerate(products):
            w.writerow([i, f"{b.title()} {m.upper()} {t} - black", ""])
    for split, n in (("train", 36), ("valid", 18), ("test", 18)):
        with (folder / f"{split}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ltable_id", "rtable_id", "label"])
            for k in range(n):
                left = rng.randrange(len(products))
                right = left if k % 3 == 0 else rng.choice([j for j in range(len(products)) if j != left])
                w.writerow([left, right, int(left == right)])
    return folder


def train_tiny_matcher(data: Path, out: Path, arch: str = "lea") -> Path:
    train_matcher(
        load_dataset(data, "deepmatcher"),
        out,
        arch=arch,
        augment="typo",
        epochs=1,
        batch_size=8,
        seed=1,
        tiny_config=TINY,
        max_length=32,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def tiny_matcher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval-matcher")
    data = write_tiny_deepmatcher(root / "data")
    return data, train_tiny_matcher(data, root / "model")


def test_clean_and_noisy_metrics(tiny_matcher: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data, model = tiny_matcher
    dataset = load_dataset(data, "deepmatcher")
    seen: list[list[tuple[str, str]]] = []
    original = eval_module.score_pairs

    def spy(m, c, pairs, batch_size=64):
        seen.append(list(pairs))
        return original(m, c, pairs, batch_size)

    monkeypatch.setattr(eval_module, "score_pairs", spy)
    result = evaluate_matcher(model, dataset, "test", noise_seeds=[1, 2])

    for key in ("f1_clean", "precision", "recall", "f1_noisy", "threshold", "pairs", "model"):
        assert key in result
    for key in ("f1_clean", "precision", "recall", "f1_noisy", "pr_auc"):
        assert 0.0 <= result[key] <= 1.0
    assert 0.0 <= result["threshold"] <= 1.0
    assert result["pairs"] == 18 and result["positives"] == 6
    assert set(result["f1_noisy_per_seed"]) == {"1", "2"}
    assert result["f1_noisy"] == pytest.approx(sum(result["f1_noisy_per_seed"].values()) / 2)
    assert result["noise"] == "typo-v1"
    assert result["model"]["kind"] == "matcher" and result["model"]["arch"] == "lea"
    assert result["model"]["folder"] == model.name

    # One clean pass, then one pass per noisy copy; both sides noised, copies differ.
    clean, noisy1, noisy2 = seen
    assert len(clean) == len(noisy1) == 18
    assert sum(a != na for (a, _), (na, _) in zip(clean, noisy1)) > 0
    assert sum(b != nb for (_, b), (_, nb) in zip(clean, noisy1)) > 0
    assert noisy1 != noisy2

    # Deterministic: the same seeds give the same noisy inputs and numbers.
    seen.clear()
    again = evaluate_matcher(model, dataset, "test", noise_seeds=[1, 2])
    assert seen[1] == noisy1 and seen[2] == noisy2
    assert again == result


def test_without_noise_and_other_split(tiny_matcher: tuple[Path, Path]) -> None:
    data, model = tiny_matcher
    result = evaluate_matcher(model, load_dataset(data, "deepmatcher"), "valid")
    assert result["f1_noisy"] is None and result["f1_noisy_per_seed"] == {}
    assert result["split"] == "valid" and result["pairs"] == 18
    assert result["fields"] == "title"


def test_int8_scoring_keeps_the_threshold_and_reports_the_mode(tiny_matcher: tuple[Path, Path]) -> None:
    data, model = tiny_matcher
    dataset = load_dataset(data, "deepmatcher")
    fp32 = evaluate_matcher(model, dataset, "test")
    int8 = evaluate_matcher(model, dataset, "test", quantize="int8")
    assert int8["model"]["quantize"] == "int8" and fp32["model"]["quantize"] == "none"
    assert int8["threshold"] == fp32["threshold"], "int8 serves with the fp32 calibration"
    for key in ("f1_clean", "precision", "recall", "pr_auc"):
        assert 0.0 <= int8[key] <= 1.0
    with pytest.raises(ValueError, match="int8"):
        evaluate_matcher(model, dataset, "test", quantize="int4")
