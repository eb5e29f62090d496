"""The default recipe end to end with a tiny random model on tiny generated benchmarks: the folder
loads and scores, weights are bf16, an interrupted run resumes to the same model, LOO helpers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from app.cli import build_parser
from models.artefacts import ManifestError
from models.bi_encoder import BiEncoder
from models.default_matcher import MODEL_CARD, load_default_matcher
from models.match_head import HEAD_FILE
from models.matcher_io import load_matcher
from tests.training.default_recipe_fixtures import TINY, tiny_config, write_all
from training.default_recipe.artefact import MAX_FOLDER_BYTES, folder_bytes
from training.default_recipe.loo import evaluate_default_matcher, loo_config
from training.default_recipe.sources import load_source
from training.default_recipe.train import train_default


def _encoder() -> BiEncoder:
    torch.manual_seed(0)
    return BiEncoder.from_config(TINY)


def _train(root: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return train_default(out, tiny_config(), data_root=root, bi_encoder=_encoder(), progress=False, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = write_all(tmp_path_factory.mktemp("recipe-train-data"))
    out = tmp_path_factory.mktemp("recipe-train") / "model"
    return root, out, _train(root, out)


def test_folder_layout_and_manifest(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, summary = trained
    for name in ("model.safetensors", "lea.safetensors", "lea_config.json", "calibration.json", HEAD_FILE,
                 "manifest.json", MODEL_CARD, "bi_encoder/config.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not (out.parent / "model.work" / "checkpoint.pt").exists()  # removed once the folder is complete
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.bfloat16}
    manifest = json.loads((out / "manifest.json").read_text())
    settings = manifest["settings"]
    assert settings["recipe"] == "default" and settings["fields"] == [
        "title",
        "brand",
        "category",
        "price",
        "description",
    ]
    assert {s["name"] for s in settings["sources"]} == {"tiny-dm", "tiny-lspc", "tiny-wdcp"}
    assert settings["config"]["pairs_per_epoch"] == 48 and settings["max_length_report"]["max_length"] <= 64
    assert next(s for s in settings["sources"] if s["name"] == "tiny-wdcp")["mined_negatives"] > 0
    assert len(summary["history"]) == 2 and summary["folder_bytes"] == folder_bytes(out) < MAX_FOLDER_BYTES
    card = (out / MODEL_CARD).read_text()
    assert "tiny-wdcp" in card and "Training data" in card


def test_artefact_loads_and_scores(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    root, out, _ = trained
    matcher = load_default_matcher(out)
    offer = {"title": "acme toaster x123", "brand": "acme", "price": 19.99}
    candidates = [{"title": "Acme X123 toaster", "brand": None}, {"title": "globex keyboard y555", "price": 5.0}]
    probs = matcher.score(offer, candidates)
    assert probs.shape == (2,) and np.all((probs > 0) & (probs < 1))
    details = matcher.score_pairs([offer, offer], candidates)
    np.testing.assert_allclose(details.probabilities, probs)
    np.testing.assert_allclose(matcher.head.apply(details.features), probs)
    assert details.features.shape[1] == len(matcher.head.feature_names)
    assert 0.0 < matcher.threshold < 1.0
    # The same folder serves as a plain matcher (cross-encoder + temperature) through load_matcher.
    model, calibrator, calibration, _ = load_matcher(out)
    logits = model.predict_logits([(a, b) for a, b in zip(*_texts(matcher, offer, candidates))])
    np.testing.assert_allclose(logits, details.logits, rtol=1e-5, atol=1e-5)
    assert calibration["fields"] == matcher.fields
    # The held-out evaluation runs on the loaded folder.
    test = load_source(tiny_config().sources[2], root, test="100un").test
    assert test
    result = evaluate_default_matcher(matcher, test)
    assert result["pairs"] == len(test) and 0.0 <= result["head"]["f1"] <= result["head"]["oracle_f1"] <= 1.0
    assert "cross_encoder_only" in result


def _texts(matcher: Any, offer: dict[str, Any], candidates: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    from models.product_text import serialize_product

    return [serialize_product(offer, matcher.fields)] * len(candidates), [
        serialize_product(c, matcher.fields) for c in candidates
    ]


def test_resume_after_interruption_gives_the_same_model(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, reference, _ = trained

    class Interrupted(Exception):
        pass

    def stop(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 1:
            raise Interrupted

    out = tmp_path / "model"
    with pytest.raises(Interrupted):
        _train(root, out, on_epoch=stop)
    assert (tmp_path / "model.work" / "checkpoint.pt").is_file() and not out.exists()
    summary = _train(root, out)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    with (
        safe_open(str(out / "model.safetensors"), "pt") as a,
        safe_open(str(reference / "model.safetensors"), "pt") as b,
    ):
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
    head, ref = json.loads((out / HEAD_FILE).read_text()), json.loads((reference / HEAD_FILE).read_text())
    assert head["coef"] == ref["coef"] and head["threshold"] == ref["threshold"]


def test_length_grouping_pads_less_on_the_same_pairs(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _, grouped = trained  # the recipe's default: grouped batches
    random_run = train_default(
        tmp_path / "random", tiny_config(length_grouping=False), data_root=root, bi_encoder=_encoder(), progress=False
    )
    for g, r in zip(grouped["history"], random_run["history"], strict=True):
        assert g["pairs"] == r["pairs"] and g["positives"] == r["positives"]  # the same epoch texts
        assert g["length_grouping"] and not r["length_grouping"]
        assert g["padding_share"] < r["padding_share"]
    assert load_default_matcher(tmp_path / "random").threshold > 0.0


def test_init_starts_from_a_trained_release(trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    root, release, _ = trained
    # A learning rate far below bf16's resolution: the saved weights are the starting ones.
    still = tmp_path / "still"
    _ = train_default(still, tiny_config(epochs=1, lr=1e-12, init=str(release)), data_root=root,
                      bi_encoder=_encoder(), progress=False)  # fmt: skip
    fresh = tmp_path / "fresh"
    _ = train_default(fresh, tiny_config(epochs=1, lr=1e-12), data_root=root, bi_encoder=_encoder(), progress=False)
    with (
        safe_open(str(still / "model.safetensors"), "pt") as a,
        safe_open(str(release / "model.safetensors"), "pt") as b,
        safe_open(str(fresh / "model.safetensors"), "pt") as c,
    ):
        keys = list(a.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in keys)
        assert not all(torch.equal(c.get_tensor(k), b.get_tensor(k)) for k in keys)
    init = json.loads((still / "manifest.json").read_text())["settings"]["init"]
    assert init["path"] == str(release) and len(init["weights_sha256"]) == 64
    assert "Started from the cross-encoder of" in (still / MODEL_CARD).read_text()
    assert "Started from" not in (fresh / MODEL_CARD).read_text()
    assert json.loads((fresh / "manifest.json").read_text())["settings"]["init"] is None


def test_init_refuses_a_folder_that_is_not_a_matcher(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, release, _ = trained
    with pytest.raises(ManifestError):
        train_default(tmp_path / "m", tiny_config(epochs=1, init=str(tmp_path)), data_root=root,
                      bi_encoder=_encoder(), progress=False)  # fmt: skip
    other = tmp_path / "blocker"
    shutil.copytree(release, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "kind": "blocker"}))
    with pytest.raises(ValueError, match="not a 'matcher'"):
        train_default(tmp_path / "m", tiny_config(epochs=1, init=str(other)), data_root=root,
                      bi_encoder=_encoder(), progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="lr must be > 0"):
        tiny_config(lr=0.0)


def test_loo_config_and_cli_wiring() -> None:
    cfg = loo_config("wdc-products")
    assert {"wdc-products", "wdc-block-small"} <= cfg.excluded()
    args = build_parser().parse_args(["train", "default", "--out", "x", "--exclude", "abt-buy,amazon-google",
                                      "--budget", "smoke"])  # fmt: skip
    assert args.exclude == ("abt-buy", "amazon-google") and args.budget == "smoke" and not args.needs_settings
    assert args.length_grouping is None  # the config's default decides
    grouped = build_parser().parse_args(["train", "default", "--out", "x", "--length-grouping"])
    assert grouped.length_grouping is True
    warm = build_parser().parse_args(["train", "default", "--out", "x", "--init", "artefacts/default-matcher",
                                      "--lr", "3e-5"])  # fmt: skip
    assert warm.init == "artefacts/default-matcher" and warm.lr == 3e-5


def test_excluded_source_is_not_trained_on(trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    root, _, _ = trained
    out = tmp_path / "model"
    train_default(out, tiny_config(exclude=("tiny-dm",), epochs=1), data_root=root, bi_encoder=_encoder(),
                  progress=False)  # fmt: skip
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert {s["name"] for s in settings["sources"]} == {"tiny-lspc", "tiny-wdcp"}
    assert settings["excluded"] == ["tiny-dm"] and "tiny-dm" not in settings["valid_per_source"]


@pytest.mark.integration
def test_indomain_benchmark_judges_a_model_on_the_test_splits_present(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import bench_default_loo
    from tests.training.default_recipe_fixtures import write_deepmatcher

    _, out, _ = trained
    # Only Abt-Buy is in this data root: the other in-domain tests are skipped, not failed.
    root = tmp_path / "data"
    write_deepmatcher(root / "abt-buy", seed=5)
    results = tmp_path / "results"
    argv = ["indomain", "--model", str(out), "--data", str(root), "--results", str(results), "--name", "tiny"]
    assert bench_default_loo.main(argv) == 0
    payload = json.loads((results / "default_indomain" / "tiny.json").read_text())
    assert list(payload["tests"]) == ["abt-buy"]
    test = payload["tests"]["abt-buy"]
    assert test["test"]["pairs"] == 18 and test["ditto_f1"] == pytest.approx(89.33)
    assert 0.0 <= test["test"]["head"]["f1"] <= test["test"]["head"]["oracle_f1"] <= 1.0
    assert set(test["zero_shot"]) == {"match_threshold", "review_threshold"}
    assert "| tiny | Abt-Buy | 18 |" in capsys.readouterr().out
    # Every test pair's scores, in test order, for studies after the model folder is gone.
    scores = json.loads((results / "default_indomain" / "scores" / "tiny.json").read_text())["abt-buy"]
    assert len(scores["pairs"]) == 18 and sum(y for _, _, y in scores["pairs"]) == test["test"]["positives"]
    for key in ("head_probability", "cross_encoder_logit", "cosine", "zero_shot"):
        assert len(scores[key]) == 18, key
    assert all(0.0 <= x <= 1.0 for x in scores["head_probability"])
