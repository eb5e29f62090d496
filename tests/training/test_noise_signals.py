"""The ``signals`` noise method: label-free pair signals, the EM label-noise model, the trainer wiring."""

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
    SIGNAL_NAMES,
    NoiseConfig,
    corrected_targets,
    detect_noisy_pairs,
    fit_label_noise,
    flip_labels,
    flip_rates,
    signal_features,
)

from ..conftest import tiny_bi_encoder
from .test_noise import _noisy_tiny, _train

# --------------------------------------------------------------------------------------------
# synthetic signals with a known clean label
# --------------------------------------------------------------------------------------------


def _signals(n: int = 3000, match_rate: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows in SIGNAL_NAMES order whose distribution depends on the clean label; ``(features, truth)``.

    Matches: high cosine, mostly agreeing identifiers, high coverage, close prices. Non-matches:
    lower cosine, mostly conflicting identifiers. Both classes overlap, like real pairs.
    """
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < match_rate).astype(np.int64)
    cos = np.tanh(np.where(z == 1, rng.normal(1.4, 0.3, n), rng.normal(0.75, 0.3, n)))
    u = rng.random(n)
    ident_match = np.where(z == 1, u < 0.8, u < 0.03)
    ident_conflict = ~ident_match & np.where(z == 1, u < 0.9, u < 0.88)
    ident_score = np.where(ident_match, rng.uniform(0.8, 1.0, n), np.where(ident_conflict, rng.uniform(0, 0.5, n), 0))
    left = np.where(z == 1, rng.beta(6, 2, n), rng.beta(2, 4, n))
    right = np.where(z == 1, rng.beta(6, 2, n), rng.beta(2, 4, n))
    f1 = 2 * left * right / (left + right)
    missing = rng.random(n) < 0.5
    price = np.where(missing, 0.0, np.abs(np.where(z == 1, rng.normal(0, 0.2, n), rng.normal(0, 1.0, n))))
    zeros = np.zeros(n)  # no brand field anywhere: a constant signal the fit must ignore
    x = np.column_stack(
        [cos, ident_match, ident_conflict, ident_score, left, right, f1, zeros, zeros, price, missing]
    ).astype(np.float64)
    assert x.shape[1] == len(SIGNAL_NAMES)
    return x, z


def _true_rates(truth: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    return float(noisy[truth == 0].mean()), float(1 - noisy[truth == 1].mean())


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_em_recovers_the_flip_rates_and_finds_the_flips(rate: float) -> None:
    x, truth = _signals()
    noisy, flipped = flip_labels(truth, rate, seed=1)
    fit = fit_label_noise(x, noisy)
    r01, r10 = _true_rates(truth, noisy)
    assert fit.rate_01 == pytest.approx(r01, abs=0.04)
    assert fit.rate_10 == pytest.approx(r10, abs=0.08)  # the rare class: ~300 true matches
    # At 40 % flips the logistic stage leaves some soft mass on the match side (0.18 here).
    assert fit.match_rate == pytest.approx(truth.mean(), abs=0.02 if rate < 0.3 else 0.08)
    assert fit.converged and fit.features == tuple(n for n in SIGNAL_NAMES if not n.startswith("brand"))
    flags = fit.p_noise(noisy) >= 0.5
    precision, recall = (flags & flipped).sum() / flags.sum(), (flags & flipped).sum() / flipped.sum()
    # Flagging at random would be right at the flip rate; the relabelled labels beat the noisy ones.
    assert precision >= 0.85 and recall >= 0.85, (precision, recall)
    assert ((fit.posterior >= 0.5) == truth).mean() >= 0.94 > 1 - rate


def test_em_is_deterministic_and_capped() -> None:
    x, truth = _signals(n=1500, seed=2)
    noisy, _ = flip_labels(truth, 0.4, seed=2)
    first, again = fit_label_noise(x, noisy), fit_label_noise(x, noisy)
    np.testing.assert_array_equal(first.posterior, again.posterior)
    assert (first.rate_01, first.rate_10, first.iterations) == (again.rate_01, again.rate_10, again.iterations)
    capped = fit_label_noise(x, noisy, max_rate=0.25)
    assert capped.rate_01 <= 0.25 and capped.rate_10 <= 0.25
    # Labels that mostly say the opposite of the signals: the rates stay below 0.5 (r01 + r10 < 1).
    inverted = fit_label_noise(x, 1 - truth)
    assert inverted.rate_01 < 0.5 and inverted.rate_10 < 0.5
    assert np.all((first.posterior >= 0) & (first.posterior <= 1))


def test_em_refuses_bad_inputs() -> None:
    x, truth = _signals(n=200)
    with pytest.raises(ValueError):
        fit_label_noise(x[:, :5], truth)
    with pytest.raises(ValueError):
        fit_label_noise(x, np.zeros(200, dtype=int))  # one class only
    with pytest.raises(ValueError):
        fit_label_noise(x, truth[:-1])
    with pytest.raises(ValueError):
        fit_label_noise(x, truth, max_rate=0.5)


def test_signals_report_feeds_every_action() -> None:
    x, truth = _signals(n=2000, seed=3)
    noisy, flipped = flip_labels(truth, 0.2, seed=3)
    report = detect_noisy_pairs(noisy, features=x, config=NoiseConfig(method="signals"))
    assert report.method == "signals" and len(report) == 2000
    assert report.p_noise.shape == report.flagged.shape == report.posterior.shape == (2000,)
    np.testing.assert_array_equal(report.flagged, report.p_noise >= 0.5)
    np.testing.assert_allclose(report.p_noise, np.where(noisy == 1, 1 - report.posterior, report.posterior))
    assert report.precision_recall(flipped)["precision"] >= 0.85
    summary = json.loads(json.dumps(report.summary()))
    assert summary["signals"]["converged"] and set(summary["fitted_flip_rates"]) == {"label1_true0", "label0_true1"}
    # relabel: the soft target is the posterior; forward: the rates the report implies.
    targets, weights = corrected_targets(noisy, np.ones(2000), report, "relabel", 1.0 - noisy)
    np.testing.assert_allclose(targets, report.posterior) and np.testing.assert_array_equal(weights, 1.0)
    assert flip_rates(noisy, report) == pytest.approx(report.rates, abs=0.01)
    with pytest.raises(ValueError):
        detect_noisy_pairs(noisy, losses=np.ones(2000), config=NoiseConfig(method="signals"))


def test_signals_config_refuses_what_needs_the_model_in_training() -> None:
    assert NoiseConfig(method="signals").before_training and not NoiseConfig(method="bmm").before_training
    for options in ({"restart": True}, {"warmup_epochs": 2}, {"require_disagreement": True}):
        with pytest.raises(ValueError):
            NoiseConfig(method="signals", **options)


def test_signal_features_of_records() -> None:
    lefts = [{"name": "sony turntable pslx350h", "price": "99.0"}, {"title": "acme toaster x100", "brand": "acme"}]
    rights = [{"name": "Sony PS-LX350H belt drive turntable", "price": "$109.00"}, {"title": "globex kettle k9"}]
    x = signal_features(lefts, rights, tiny_bi_encoder())
    assert x.shape == (2, len(SIGNAL_NAMES)) and np.all(np.abs(x[:, 0]) <= 1 + 1e-6)
    row = dict(zip(SIGNAL_NAMES, x[0], strict=True))
    assert row["identifier_match"] == 1.0 and row["price_missing"] == 0.0 and row["price_log_ratio"] > 0
    assert dict(zip(SIGNAL_NAMES, x[1], strict=True))["price_missing"] == 1.0


# --------------------------------------------------------------------------------------------
# train_matcher wiring (tiny random models)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("signals-encoder")
    tiny_bi_encoder().save(folder)
    return str(folder)


def test_trainer_detects_once_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_encoder_folder: str
) -> None:
    seen: list[dict[str, Any]] = []
    original = tm._batch_loss

    def spy(logits: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.append({"weights": kw["weights"].clone(), "p_noise": kw["p_noise"], "rates": kw["rates"]})
        return original(logits, targets, **kw)

    monkeypatch.setattr(tm, "_batch_loss", spy)
    options = {"signals_encoder": tiny_encoder_folder}
    summary = _train(tmp_path / "s", epochs=2, noise="signals", noise_options=options, keep_noise_report=True)
    steps = math.ceil(48 / 8)
    assert len(seen) == 2 * steps and len(summary["history"]) == 2  # no warm-up, no extra stage
    noise = summary["noise"]
    assert noise["before_training"] is True and noise["warmup_epochs"] is None and noise["restart"] is False
    (detection,) = noise["detections"]
    assert detection["epoch"] == 0 and detection["method"] == "signals" and "signals" in detection
    # Every epoch trains on the corrected weights, none on a second p_noise weighting.
    assert all(s["p_noise"] is None and s["rates"] is None for s in seen)
    report = summary["noise_report"]
    epoch_weights = torch.cat([s["weights"] for s in seen[:steps]])
    assert sorted(epoch_weights.tolist()) == pytest.approx(sorted(1 - np.asarray(report["p_noise"])), abs=1e-6)
    assert not any(h["noise_weighted"] for h in summary["history"])
    manifest = read_manifest(tmp_path / "s")
    assert manifest.settings["noise"]["method"] == "signals"
    assert manifest.settings["noise"]["signals_encoder"] == tiny_encoder_folder


def test_trainer_signals_relabel_and_forward(tmp_path: Path, tiny_encoder_folder: str) -> None:
    options = {"signals_encoder": tiny_encoder_folder}
    relabel = _train(tmp_path / "r", epochs=1, noise="signals", noise_action="relabel", noise_options=options)
    assert [d["epoch"] for d in relabel["noise"]["detections"]] == [0]
    forward = _train(tmp_path / "f", epochs=1, noise="signals", noise_action="forward", noise_options=options)
    rates = forward["noise"]["detections"][0]["flip_rates"]
    assert 0.0 <= rates["label1_true0"] <= 0.45 and 0.0 <= rates["label0_true1"] <= 0.45
    assert 0.0 <= forward["valid_f1"] <= 1.0


def test_detection_leaves_the_seeded_streams_as_a_naive_run_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_encoder_folder: str
) -> None:
    # Loading and running the encoder would otherwise shift dropout against a naive run of the seed.
    states: list[tuple[torch.Tensor, Any]] = []
    original = tm._train_epoch

    def spy(plan: Any, state: Any, epoch: int, stage_epoch: int) -> Any:
        states.append((torch.get_rng_state(), state.order_rng.bit_generator.state))
        return original(plan, state, epoch, stage_epoch)

    monkeypatch.setattr(tm, "_train_epoch", spy)
    ds, _ = _noisy_tiny()
    _train(tmp_path / "n", dataset=ds, epochs=1)
    _train(
        tmp_path / "s", dataset=ds, epochs=1, noise="signals", noise_options={"signals_encoder": tiny_encoder_folder}
    )
    (naive_torch, naive_order), (signals_torch, signals_order) = states
    assert torch.equal(naive_torch, signals_torch) and naive_order == signals_order


def test_cli_accepts_the_signals_method() -> None:
    from .test_cli_matcher import build_parser

    base = [
        "train",
        "matcher",
        "--data",
        "d",
        "--format",
        "deepmatcher",
        "--out",
        "o",
        "--arch",
        "vanilla",
        "--noise",
        "signals",
    ]
    args = build_parser().parse_args([*base, "--noise-action", "relabel"])
    assert (args.noise, args.noise_action) == ("signals", "relabel")
