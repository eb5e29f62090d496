"""Label-noise detection (beta mixture, kNN), handling in the loss, and the trainer / CLI wiring."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import training.train_matcher as tm
from models.artefacts import read_manifest
from training.noise import (
    BetaMixture,
    NoiseConfig,
    NoiseReport,
    bce_losses,
    bmm_noise_probability,
    corrected_targets,
    detect_noisy_pairs,
    flip_labels,
    flip_rates,
    forward_corrected_bce,
    knn_noise_probability,
    noisy_batch_targets,
    normalise_losses,
    pair_features,
    pos_weight_for_targets,
    prior_penalty,
)

from .test_train_matcher import TINY, tiny_dataset

# --------------------------------------------------------------------------------------------
# beta mixture
# --------------------------------------------------------------------------------------------


def test_bmm_recovers_the_components_of_a_two_beta_sample() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.beta(2, 8, 2100), rng.beta(8, 2, 900)])
    truth = np.r_[np.zeros(2100, bool), np.ones(900, bool)]
    fitted = BetaMixture(iterations=200).fit(x)
    low, high = 1 - fitted.high, fitted.high
    assert fitted.weights[high] == pytest.approx(0.3, abs=0.03)
    assert fitted.means()[low] == pytest.approx(0.2, abs=0.02)
    assert fitted.means()[high] == pytest.approx(0.8, abs=0.02)
    assert fitted.alphas[low] == pytest.approx(2, rel=0.25) and fitted.betas[low] == pytest.approx(8, rel=0.25)
    assert fitted.alphas[high] == pytest.approx(8, rel=0.25) and fitted.betas[high] == pytest.approx(2, rel=0.25)
    # The spec's 10 EM iterations are not fully converged, but already separate the two modes.
    short = BetaMixture().fit(x)
    assert short.high == 1 and short.means()[1] > 0.6 > 0.25 > short.means()[0]
    assert ((short.posterior(x) >= 0.5) == truth).mean() > 0.9


def test_lookup_never_lowers_the_noise_probability_above_its_peak() -> None:
    rng = np.random.default_rng(1)
    fitted = BetaMixture().fit(np.concatenate([rng.beta(2, 6, 800), rng.beta(5, 2, 200)]))
    table = fitted.lookup_table()
    peak = int(np.argmax(table))
    assert np.all(np.diff(table[peak:]) >= 0) and table[-1] == table.max()
    grid = np.linspace(0.001, 0.999, 57)
    assert np.all(fitted.noise_probability(grid) >= 0) and np.all(fitted.noise_probability(grid) <= 1)


def test_normalise_losses_clips_and_scales() -> None:
    losses = np.r_[np.linspace(0, 1, 98), 50.0, 80.0]  # two outliers above the 95th percentile
    x = normalise_losses(losses)
    assert x.min() > 0 and x.max() < 1 and x[-1] == x[-2] == x.max()
    assert np.all(normalise_losses(np.full(10, 3.0)) == 0.5)


def test_bmm_fits_per_class_and_falls_back_to_one_fit_for_tiny_classes() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(300, int), np.ones(40, int)]
    losses = rng.gamma(1.0, 0.1, labels.size)
    _, fits = bmm_noise_probability(losses, labels)
    assert set(fits) == {"0", "1"}
    _, fits = bmm_noise_probability(losses, labels, min_class_size=50)
    assert set(fits) == {"all"}


# --------------------------------------------------------------------------------------------
# detection on a synthetic separable dataset with 20 % flips
# --------------------------------------------------------------------------------------------


def _separable(n: int = 800, pos_share: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clusters of "products": matches near one centre per product, non-matches near another.

    Returns ``(features, true labels, class centres (2, 8, 16))``.
    """
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < pos_share).astype(int)
    centres = rng.normal(size=(2, 8, 16))
    cluster = rng.integers(0, 8, n)
    features = centres[truth, cluster] + 0.35 * rng.normal(size=(n, 16))
    return features, truth, centres


def _noisy_model_losses(features: np.ndarray, centres: np.ndarray, noisy: np.ndarray, seed: int = 0) -> np.ndarray:
    # A "model" that has learnt the clusters, with some error: flipped pairs get high loss.
    dist = np.linalg.norm(features[:, None, None, :] - centres[None], axis=-1).min(axis=2)  # (n, 2)
    score = dist[:, 0] - dist[:, 1]
    logits = 3 * score / score.std() + np.random.default_rng(seed).normal(size=score.size)
    return bce_losses(logits, noisy)


@pytest.mark.parametrize("method", ["bmm", "knn", "both"])
def test_detector_flags_most_flipped_labels(method: str) -> None:
    features, truth, centres = _separable()
    noisy, flipped = flip_labels(truth, 0.2, seed=3)
    losses = _noisy_model_losses(features, centres, noisy)
    report = detect_noisy_pairs(noisy, losses=losses, features=features, config=NoiseConfig(method=method))
    scores = report.precision_recall(flipped)
    # Random flagging has precision ~0.2 (the flip rate): these bounds fail for a random detector.
    assert scores["precision"] >= 0.8, scores
    assert scores["recall"] >= 0.75, scores
    assert len(report) == len(noisy) and report.method == method
    again = detect_noisy_pairs(noisy, losses=losses, features=features, config=NoiseConfig(method=method))
    np.testing.assert_array_equal(report.p_noise, again.p_noise)  # deterministic
    np.testing.assert_array_equal(report.flagged, again.flagged)
    summary = report.summary()
    assert summary["flagged"] == int(report.flagged.sum())
    assert json.loads(json.dumps(report.to_dict()))["pairs"] == len(noisy)


def test_knn_vote_corrects_for_class_imbalance() -> None:
    # 10 % matches, clean labels: a plain majority vote would call every match a non-match.
    features, truth, _ = _separable(n=600, pos_share=0.1, seed=4)
    p_noise, flagged, details = knn_noise_probability(features, truth, k=25)
    assert flagged[truth == 1].mean() < 0.1 and flagged.mean() < 0.05
    np.testing.assert_array_equal(details["corrected_labels"][truth == 1], 1)
    assert p_noise.shape == truth.shape and np.all((0 <= p_noise) & (p_noise <= 1))


def test_knn_rate_selects_per_class() -> None:
    features, truth, _ = _separable(n=400, seed=5)
    noisy, _ = flip_labels(truth, 0.2, seed=5)
    _, flagged, _ = knn_noise_probability(features, noisy, k=15, rate=0.1)
    for c in (0, 1):
        assert flagged[noisy == c].sum() == round(0.1 * (noisy == c).sum())


def test_detection_needs_its_inputs() -> None:
    with pytest.raises(ValueError):
        detect_noisy_pairs([0, 1, 0], features=np.eye(3), config=NoiseConfig(method="bmm"))
    with pytest.raises(ValueError):
        detect_noisy_pairs([0, 1, 0], losses=[0.1, 0.2, 0.3], config=NoiseConfig(method="knn"))
    with pytest.raises(ValueError):
        NoiseConfig(method="none")
    with pytest.raises(ValueError):
        NoiseConfig(action="drop")


def test_flip_labels_is_exact_and_seeded() -> None:
    labels = np.r_[np.ones(100, int), np.zeros(900, int)]
    noisy, flipped = flip_labels(labels, 0.2, seed=7)
    assert flipped.sum() == 200 and np.all(noisy[flipped] != labels[flipped])
    assert np.all(noisy[~flipped] == labels[~flipped])
    assert np.array_equal(flip_labels(labels, 0.2, seed=7)[1], flipped)
    assert not np.array_equal(flip_labels(labels, 0.2, seed=8)[1], flipped)


def test_pair_features_are_unit_rows_of_the_four_blocks() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    f = pair_features(u, v)
    assert f.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# handling in the loss
# --------------------------------------------------------------------------------------------


def test_downweight_and_relabel_targets() -> None:
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    p = torch.tensor([0.9, 0.8, 0.1, 0.0])
    logits = torch.tensor([-3.0, 3.0, 2.0, 0.5])
    targets, weights = noisy_batch_targets(labels, p, logits, "downweight")
    assert torch.equal(targets, labels)
    torch.testing.assert_close(weights, 1 - p)
    # Relabel: offset 1.0 moves the decision to logit 1.0, so the last pair's own prediction is 0.
    targets, weights = noisy_batch_targets(labels, p, logits, "relabel", logit_offset=1.0)
    z_hat = torch.tensor([0.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(targets, (1 - p) * labels + p * z_hat)
    assert torch.equal(weights, torch.ones(4))


def test_flip_rates_invert_the_flipped_counts() -> None:
    # 100 clean pairs: 20 true matches, 80 non-matches; 8 non-matches (10 %) and 5 matches (25 %)
    # flipped, and a detector that finds exactly those 13 flips.
    truth = np.array([1] * 20 + [0] * 80)
    flipped = np.zeros(100, dtype=bool)
    flipped[:5] = True
    flipped[20:28] = True
    labels = np.where(flipped, 1 - truth, truth)
    report = NoiseReport(labels=labels, p_noise=flipped.astype(float), flagged=flipped, epoch=1, method="bmm")
    r01, r10 = flip_rates(labels, report)
    assert math.isclose(r01, 8 / 80) and math.isclose(r10, 5 / 20)


def test_forward_corrected_bce_is_minimised_by_the_clean_probability() -> None:
    rates, clean = (0.2, 0.1), 0.3
    noisy = rates[0] + (1 - rates[0] - rates[1]) * clean  # P(label 1) under the flips
    logits = torch.linspace(-4, 4, 801)
    expected = noisy * forward_corrected_bce(logits, torch.ones(801), rates) + (1 - noisy) * forward_corrected_bce(
        logits, torch.zeros(801), rates
    )
    best = float(torch.sigmoid(logits[int(torch.argmin(expected))]))
    assert abs(best - clean) < 0.01
    # No flips: the plain BCE; an offset shifts the logit's meaning.
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(801), reduction="none")
    torch.testing.assert_close(forward_corrected_bce(logits, torch.ones(801), (0.0, 0.0)), plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        forward_corrected_bce(logits + 1.5, torch.ones(801), rates, logit_offset=1.5),
        forward_corrected_bce(logits, torch.ones(801), rates),
    )


def test_prior_penalty_is_zero_at_the_prior() -> None:
    logits = torch.full((8,), math.log(0.2 / 0.8))
    assert float(prior_penalty(logits, 0.2)) == pytest.approx(0.0, abs=1e-6)
    assert float(prior_penalty(logits, 0.5)) > 0.05


# --------------------------------------------------------------------------------------------
# train_matcher wiring (tiny random model)
# --------------------------------------------------------------------------------------------


def _noisy_tiny(rate: float = 0.2):
    ds = tiny_dataset(n_train=48)
    train = ds.splits["train"]
    noisy, flipped = flip_labels([p.label for p in train], rate, seed=0)
    ds.splits["train"] = [type(p)(p.left, p.right, int(y), p.pair_id) for p, y in zip(train, noisy)]
    return ds, flipped


def _train(folder: Path, **kw: Any) -> dict[str, Any]:
    ds = kw.pop("dataset", None) or _noisy_tiny()[0]
    options = {"arch": "vanilla", "epochs": 3, "batch_size": 8, "seed": 3, "tiny_config": TINY, "max_length": 32}
    options.update(kw)
    return tm.train_matcher(ds, folder, progress=False, **options)


def test_downweighting_changes_the_loss_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    original = tm._batch_loss

    def spy(logits: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.append({"weights": kw["weights"].clone(), "p_noise": kw["p_noise"]})
        return original(logits, targets, **kw)

    monkeypatch.setattr(tm, "_batch_loss", spy)
    options = {"noise_options": {"bmm_min_class": 5}, "keep_noise_report": True}
    summary = _train(tmp_path / "m", noise="bmm", noise_action="downweight", **options)
    steps = math.ceil(48 / 8)
    assert len(seen) == 3 * steps
    # Warm-up epoch 1: plain BCE. Epochs 2-3: weights 1 - p_noise from the detection before them.
    assert all(s["p_noise"] is None for s in seen[:steps])
    later = torch.cat([s["p_noise"] for s in seen[steps:]])
    assert later.shape == (2 * 48,) and float(later.max()) > 0.5 and float(later.min()) < 0.5
    noise = summary["noise"]
    assert noise["warmup_epochs"] == 1 and [d["epoch"] for d in noise["detections"]] == [1, 2]
    report = summary["noise_report"]
    assert report["epoch"] == 2 and len(report["p_noise"]) == 48 and report["train_indices"] == list(range(48))
    epoch3 = torch.cat([s["p_noise"] for s in seen[2 * steps :]])
    assert sorted(epoch3.tolist()) == pytest.approx(sorted(report["p_noise"]), abs=1e-6)

    manifest = read_manifest(tmp_path / "m")
    assert manifest.settings["noise"]["method"] == "bmm" and manifest.settings["noise"]["action"] == "downweight"
    assert len(manifest.metrics["noise"]["detections"]) == 2
    assert [h["noise_weighted"] for h in manifest.metrics["history"]] == [False, True, True]


def test_downweighting_lowers_the_loss_of_flagged_pairs() -> None:
    logits = torch.tensor([2.0, -2.0, 2.0])
    targets = torch.tensor([0.0, 0.0, 1.0])  # the first pair looks like a flipped match
    common = {
        "n_labelled": 3,
        "weights": torch.ones(3),
        "pseudo_cfg": None,
        "match_rate": 0.3,
        "pos_weight": torch.tensor(1.0),
        "offset": 0.0,
    }
    plain = tm._batch_loss(logits, targets, p_noise=None, noise_cfg=None, **common)
    cfg = NoiseConfig(method="bmm", action="downweight")
    weighted = tm._batch_loss(logits, targets, p_noise=torch.tensor([0.9, 0.0, 0.0]), noise_cfg=cfg, **common)
    per_pair = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert float(plain) == pytest.approx(float(per_pair.mean()))
    assert float(weighted) == pytest.approx(float((per_pair * torch.tensor([0.1, 1.0, 1.0])).mean()))


def test_sample_weights_reach_the_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = tiny_dataset(n_train=32)
    weights = [0.0 if i % 4 == 0 else 1.0 for i in range(32)]
    seen: list[torch.Tensor] = []
    original = tm._batch_loss

    def spy(logits: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.append(kw["weights"].clone())
        return original(logits, targets, **kw)

    monkeypatch.setattr(tm, "_batch_loss", spy)
    _train(tmp_path / "w", dataset=ds, epochs=1, sample_weights=weights)
    assert sorted(torch.cat(seen).tolist()) == sorted(weights)
    assert read_manifest(tmp_path / "w").settings["sample_weights"]["zero"] == 8
    with pytest.raises(ValueError):
        _train(tmp_path / "bad", dataset=ds, epochs=1, sample_weights=[1.0] * 5)
    with pytest.raises(ValueError):
        _train(tmp_path / "bad2", dataset=ds, epochs=1, noise="loss")


def test_relabel_with_both_detectors_runs_and_records(tmp_path: Path) -> None:
    summary = _train(
        tmp_path / "r",
        epochs=2,
        noise="both",
        noise_action="relabel",
        noise_options={"knn_k": 5, "bmm_min_class": 5},
    )
    (detection,) = summary["noise"]["detections"]
    assert detection["method"] == "both" and "flagged_knn" in detection and "bmm" in detection
    manifest = read_manifest(tmp_path / "r")
    assert manifest.settings["noise"]["action"] == "relabel" and manifest.settings["noise"]["knn_features"] == "matcher"
    assert 0.0 <= summary["valid_f1"] <= 1.0


def test_forward_correction_estimates_the_rates_once_and_trains(tmp_path: Path) -> None:
    options = {"warmup_epochs": 1, "bmm_min_class": 5}
    summary = _train(tmp_path / "f", epochs=3, noise="bmm", noise_action="forward", noise_options=options)
    (detection,) = summary["noise"]["detections"]  # one detection: the rates are a property of the data
    rates = detection["flip_rates"]
    assert 0.0 <= rates["label1_true0"] <= 0.45 and 0.0 <= rates["label0_true1"] <= 0.45
    assert len(summary["history"]) == 3 and 0.0 <= summary["valid_f1"] <= 1.0


def test_forward_correction_with_a_restart(tmp_path: Path) -> None:
    summary = _train(
        tmp_path / "fr",
        epochs=2,
        noise="bmm",
        noise_action="forward",
        noise_options={"warmup_epochs": 1, "bmm_min_class": 5, "restart": True},
    )
    assert [row["stage"] for row in summary["history"]] == [1, 2, 2]
    assert "flip_rates" in summary["noise"]["detections"][0]


def test_corrected_targets_for_a_restart() -> None:
    labels = np.array([1, 0, 1, 0])
    report = detect_noisy_pairs(labels, losses=np.array([3.0, 0.1, 0.2, 2.5]), config=NoiseConfig(bmm_min_class=50))
    report.p_noise = np.array([0.9, 0.0, 0.2, 1.0])
    predictions = np.array([0.0, 0.0, 1.0, 1.0])
    targets, weights = corrected_targets(labels, np.ones(4), report, "downweight", predictions)
    assert targets.tolist() == [1, 0, 1, 0] and weights.tolist() == pytest.approx([0.1, 1.0, 0.8, 0.0])
    targets, weights = corrected_targets(labels, np.full(4, 2.0), report, "relabel", predictions)
    assert targets.tolist() == pytest.approx([0.1, 0.0, 1.0, 1.0]) and weights.tolist() == [2.0] * 4
    with pytest.raises(ValueError):
        corrected_targets(labels, np.ones(4), report, "drop", predictions)
    # sqrt(neg / pos) of the weighted targets; a missing class gives 1.0.
    assert pos_weight_for_targets(np.array([1.0, 0.0, 0.0, 0.0]), np.ones(4)) == pytest.approx(math.sqrt(3))
    assert pos_weight_for_targets(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 1.0


def test_restart_trains_a_fresh_model_on_the_corrected_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    builds: list[int] = []
    original_loss, original_build = tm._batch_loss, tm.build_model

    def spy(logits: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.append({"weights": kw["weights"].clone(), "p_noise": kw["p_noise"], "pos_weight": kw["pos_weight"]})
        return original_loss(logits, targets, **kw)

    def counting_build(*args: Any, **kw: Any):
        builds.append(1)
        return original_build(*args, **kw)

    monkeypatch.setattr(tm, "_batch_loss", spy)
    monkeypatch.setattr(tm, "build_model", counting_build)
    options = {"warmup_epochs": 1, "bmm_min_class": 5, "restart": True}
    summary = _train(
        tmp_path / "m", epochs=2, noise="bmm", noise_action="downweight", noise_options=options, keep_noise_report=True
    )
    steps = math.ceil(48 / 8)
    # 1 warm-up epoch on the noisy labels, then a fresh model for the full 2 epochs.
    assert len(builds) == 2 and len(seen) == 3 * steps
    assert [h["stage"] for h in summary["history"]] == [1, 2, 2]
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]
    noise = summary["noise"]
    assert noise["restart"] is True and [d["epoch"] for d in noise["detections"]] == [1]
    # The restarted stage never sees p_noise in the loss: the detection is folded into its weights.
    assert all(s["p_noise"] is None for s in seen)
    report = summary["noise_report"]
    later = torch.cat([s["weights"] for s in seen[steps : 2 * steps]])
    assert sorted(later.tolist()) == pytest.approx(sorted(1 - np.asarray(report["p_noise"])), abs=1e-6)
    assert torch.all(torch.cat([s["weights"] for s in seen[:steps]]) == 1)
    assert read_manifest(tmp_path / "m").settings["noise"]["restart"] is True


def test_restart_warm_up_may_be_longer_than_the_main_run(tmp_path: Path) -> None:
    options = {"warmup_epochs": 2, "bmm_min_class": 5, "restart": True}
    summary = _train(tmp_path / "m", epochs=1, noise="bmm", noise_options=options)
    assert [h["stage"] for h in summary["history"]] == [1, 1, 2]
    assert [d["epoch"] for d in summary["noise"]["detections"]] == [2]


def test_restart_rounds_detect_again_with_the_retrained_model(tmp_path: Path) -> None:
    options = {"warmup_epochs": 1, "bmm_min_class": 5, "restart": True, "restart_rounds": 2}
    summary = _train(tmp_path / "m", epochs=1, noise="bmm", noise_options=options)
    assert [h["stage"] for h in summary["history"]] == [1, 2, 3]
    assert [d["epoch"] for d in summary["noise"]["detections"]] == [1, 2]
    with pytest.raises(ValueError):
        NoiseConfig(restart=True, restart_rounds=0)


def test_no_noise_keeps_the_plain_trainer(tmp_path: Path) -> None:
    summary = _train(tmp_path / "p", epochs=1)
    assert summary["noise"] is None and summary["pseudo_labels"] is None
    manifest = read_manifest(tmp_path / "p")
    assert manifest.settings["noise"] is None and manifest.metrics["noise"] is None


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from .test_cli_matcher import build_parser

    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def test_cli_noise_and_pseudo_label_flags_parse() -> None:
    from .test_cli_matcher import build_parser

    base = ["train", "matcher", "--data", "d", "--format", "deepmatcher", "--out", "o", "--arch", "vanilla"]
    args = build_parser().parse_args(base)
    assert (args.noise, args.noise_action, args.pseudo_labels, args.min_labelled_share) == (
        "none",
        "downweight",
        False,
        0.5,
    )
    args = build_parser().parse_args(
        [*base, "--noise", "both", "--noise-action", "relabel", "--pseudo-labels", "--min-labelled-share", "0.25"]
    )
    assert (args.noise, args.noise_action, args.pseudo_labels, args.min_labelled_share) == (
        "both",
        "relabel",
        True,
        0.25,
    )
    args = build_parser().parse_args(
        [*base, "--noise", "bmm", "--noise-gate", "--noise-restart", "--noise-rounds", "2", "--noise-hard"]
    )
    assert (args.noise_gate, args.noise_restart, args.noise_rounds, args.noise_hard) == (True, True, 2, True)
    for bad in (
        ["--noise", "loss"],
        ["--noise-action", "drop"],
        ["--min-labelled-share", "0"],
        ["--noise-rounds", "0"],
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(base + bad)


def test_cli_trains_with_noise_detection_and_pseudo_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.lea import LeaCrossEncoder

    from ..conftest import tiny_bi_encoder
    from .test_eval_matcher import write_tiny_deepmatcher

    torch.manual_seed(0)
    backbone = tmp_path / "backbone"
    tiny = LeaCrossEncoder.from_config(TINY, lea=False)
    tiny.model.save_pretrained(backbone, safe_serialization=True)
    tiny.tokenizer.save_pretrained(backbone)
    blocker = tmp_path / "blocker"
    tiny_bi_encoder().save(blocker)
    data = write_tiny_deepmatcher(tmp_path / "data", seed=5)
    out = tmp_path / "model"
    argv = ["train", "matcher", "--data", str(data), "--format", "deepmatcher", "--out", str(out)]
    argv += ["--arch", "vanilla", "--backbone", str(backbone), "--epochs", "2", "--batch-size", "8"]
    argv += ["--max-length", "32", "--no-progress", "--noise", "both", "--noise-action", "relabel"]
    argv += ["--noise-knn-k", "5", "--pseudo-labels", "--pseudo-blocker", str(blocker), "--pseudo-k", "5"]
    argv += ["--pseudo-warmup", "1", "--transductive", "--pseudo-min-confidence", "0.0"]
    assert _cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out_dir"] == str(out)
    assert [d["epoch"] for d in summary["noise"]["detections"]] == [1]
    assert summary["pseudo_labels"]["pool"] > 0 and summary["pseudo_labels"]["epochs"][0]["epoch"] == 2
    manifest = read_manifest(out)
    assert manifest.settings["noise"]["method"] == "both" and manifest.settings["noise"]["knn_k"] == 5
    assert manifest.settings["pseudo_labels"]["unlabelled_pairs"] == summary["pseudo_labels"]["pool"]
    assert manifest.settings["pseudo_labels"]["min_confidence"] == 0.0


def test_disagreement_gate_keeps_pairs_the_model_gets_right() -> None:
    """Hard negatives (high loss, still predicted non-match) are not flagged with the gate on."""
    from training.noise.detect import NoiseConfig, detect_noisy_pairs

    rng = np.random.default_rng(0)
    labels = np.zeros(300, dtype=np.int64)
    labels[:60] = 1
    losses = np.concatenate(
        [
            rng.uniform(0.01, 0.05, 50),  # clean matches
            rng.uniform(2.5, 3.5, 10),  # flipped: labelled match, predicted non-match
            rng.uniform(0.01, 0.05, 160),  # easy non-matches
            rng.uniform(0.55, 0.68, 60),  # hard non-matches: right label, predicted right
            rng.uniform(2.5, 3.5, 20),  # flipped: labelled non-match, predicted match
        ]
    )
    plain = detect_noisy_pairs(labels, losses=losses, config=NoiseConfig(method="bmm"))
    gated = detect_noisy_pairs(labels, losses=losses, config=NoiseConfig(method="bmm", require_disagreement=True))
    disagree = losses > np.log(2.0)
    np.testing.assert_array_equal(gated.flagged, plain.flagged & disagree)
    assert not gated.flagged[220:280].any(), "hard negatives stay"
    assert gated.flagged[50:60].all() and gated.flagged[280:].all(), "the flips are still found"
    assert np.all(gated.p_noise[~disagree] == 0.0)
    hard = detect_noisy_pairs(
        labels, losses=losses, config=NoiseConfig(method="bmm", require_disagreement=True, hard_flags=True)
    )
    np.testing.assert_array_equal(hard.flagged, gated.flagged)
    np.testing.assert_array_equal(hard.p_noise, gated.flagged.astype(np.float64))


def test_bench_noise_detector_flags_parse() -> None:
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_noise", Path(__file__).parents[2] / "benchmarks/bench_noise.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench._detectors("bmm:downweight:3:drh,bmm:relabel") == [
        ("bmm", "downweight-w3-drh"),
        ("bmm", "relabel"),
    ]
    assert bench._detectors("bmm:downweight:3:drh2") == [("bmm", "downweight-w3-drh2")]
    for bad in ("bmm:downweight:3:x", "bmm:downweight:3:dd", "loss:downweight", "bmm:downweight:a", "bmm:relabel:3:d2"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench._detectors(bad)
