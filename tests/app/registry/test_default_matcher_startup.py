"""The shipped default matcher at start-up: registered once and served with its head, SCORER and
DEFAULT_MATCHER, the zero-shot fallback, precedence of a promoted matcher, rollback, releases."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import SHIPPED_DEFAULT_MATCHER, Settings
from app.db import calibrations, model_versions
from app.db import products as product_repo
from app.db.base import make_engine, make_session_factory
from app.main import create_app
from app.pipeline.calibration import CalibratedDecider
from app.pipeline.head_scorer import HeadScorer
from app.pipeline.match import product_mapping
from app.pipeline.rerank import CrossEncoderScorer
from app.pipeline.scoring import ZeroShotScorer
from app.registry.calibration import scorer_key
from app.registry.default_matcher import SHIPPED, DefaultMatcherError, check_folder, install_default_matcher
from app.services import Services
from models.artefacts import CALIBRATION_FILE
from models.default_matcher import load_default_matcher
from models.match_head import HEAD_FILE
from tests.app.registry.default_matcher_fixtures import default_folder, known_cuts, with_head  # noqa: F401
from tests.conftest import make_settings
from tests.helpers import product

OFFER = {"title": "Acme Widget Model 3 blue edition", "brand": "Acme"}


@contextmanager
def serving(settings: Settings, tiny_encoder: Any) -> Iterator[TestClient]:
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    assert app.state.unhandled_errors == 0


def _services(client: TestClient) -> Services:
    return client.app.state.services


def _catalogue(client: TestClient, n: int = 8) -> None:
    for i in range(1, n + 1):
        body = product(i)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code in (200, 201)


def _settings(tmp_path: Path, db_url: str, folder: Path | None, **overrides: Any) -> Settings:
    return make_settings(tmp_path / "var", db_url, default_matcher=folder, **overrides)


def test_startup_registers_serves_and_is_idempotent(tmp_path, db_url, tiny_encoder, default_folder):  # noqa: F811
    shipped = known_cuts(default_folder, tmp_path / "shipped")
    settings = _settings(tmp_path, db_url, shipped)
    with serving(settings, tiny_encoder) as client:
        services = _services(client)
        row = model_versions.active(services.factory, "matcher")
        assert row is not None and row.version == check_folder(shipped) and row.version.startswith("default-")
        assert row.metrics[SHIPPED] == str(shipped) and Path(row.path) != shipped and Path(row.path).is_dir()
        scorer = services.runtime.pipeline.scorer
        assert isinstance(scorer, HeadScorer) and scorer.name == row.version
        assert not scorer.pipeline_cosines, "the tiny-test blocker is not the head's bi-encoder"
        # The head's best offer-F1 cut on top-1 decisions decides; the review band as for matchers.
        decider = services.runtime.pipeline.decider
        assert (decider.match_threshold, decider.review_threshold) == (0.4, 0.2)

        _catalogue(client)
        res = client.post("/v1/match", json={"offer": OFFER, "top_k": 5, "explain": True})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["model_versions"]["scorer"] == row.version
        assert body["thresholds"] == {"match": 0.4, "review": 0.2}
        top = body["candidates"][0]["score"]
        assert body["decision"] == ("match" if top >= 0.4 else "review" if top >= 0.2 else "no_match")
        explanation = body["candidates"][0]["explanation"]
        assert explanation and all("weight" in p and 0.0 <= p["similarity"] <= 1.0 for p in explanation)

        # The scores are the head's probabilities over the retrieved candidate list (its margin).
        with services.factory() as session:
            rows = product_repo.by_external_ids(session, {c["external_id"] for c in body["candidates"]})
        candidates = [product_mapping(rows[c["external_id"]]) for c in body["candidates"]]
        reference = load_default_matcher(shipped)
        reference.model.precision = reference.bi_encoder.precision = "fp32"  # the suite serves fp32
        expected = reference.score(OFFER, candidates)
        np.testing.assert_allclose([c["score"] for c in body["candidates"]], expected, atol=2e-6)
        alone = reference.score(OFFER, candidates[:1])[0]
        assert abs(alone - expected[0]) > 1e-6, "a lone candidate has another margin feature"

    # A restart finds the same content registered: the same version, no second copy.
    with serving(settings, tiny_encoder) as client:
        services = _services(client)
        assert [r.version for r in model_versions.list_versions(services.factory, "matcher")] == [row.version]
        assert services.runtime.pipeline.scorer.name == row.version
        copies = list((settings.model_dir / "versions").iterdir())  # type: ignore[operator]
        assert [p.name for p in copies] == [row.version]


def test_head_match_cut_and_a_head_without_top1_cuts(tmp_path, sqlite_url, tiny_encoder, default_folder):  # noqa: F811
    shipped = known_cuts(default_folder, tmp_path / "shipped")
    with serving(_settings(tmp_path / "p", sqlite_url, shipped, head_match_cut="precision"), tiny_encoder) as client:
        decider = _services(client).runtime.pipeline.decider
        assert (decider.match_threshold, decider.review_threshold) == (0.35, 0.2)  # top-1 cut for MATCH_PRECISION
    older = known_cuts(default_folder, tmp_path / "older", top1=False)
    with serving(_settings(tmp_path / "o", sqlite_url, older), tiny_encoder) as client:
        decider = _services(client).runtime.pipeline.decider
        # HEAD_PAIR_PRECISION (0.9) picks the pairwise cut of a head fitted before ranked lists.
        assert (decider.match_threshold, decider.review_threshold) == (0.3, 0.2)


def test_scorer_zero_shot_serves_zero_shot_even_over_the_active_default(
    tmp_path,
    sqlite_url,
    tiny_encoder,
    default_folder,  # noqa: F811
):
    with serving(_settings(tmp_path, sqlite_url, default_folder, scorer="zero-shot"), tiny_encoder) as client:
        services = _services(client)
        assert isinstance(services.runtime.pipeline.scorer, ZeroShotScorer)
        assert model_versions.list_versions(services.factory, "matcher") == [], "nothing is installed"
    with serving(_settings(tmp_path, sqlite_url, default_folder), tiny_encoder) as client:
        version = _services(client).runtime.pipeline.scorer.name
        assert version.startswith("default-")
    with serving(_settings(tmp_path, sqlite_url, default_folder, scorer="zero-shot"), tiny_encoder) as client:
        services = _services(client)
        assert isinstance(services.runtime.pipeline.scorer, ZeroShotScorer)
        assert model_versions.active(services.factory, "matcher").version == version  # left as it was
        assert services.switch_if_needed() is False, "the follower does not rebuild the zero-shot runtime"
        _catalogue(client, 3)
        body = client.post("/v1/match", json={"offer": OFFER, "top_k": 3}).json()
        assert body["model_versions"]["scorer"] == ZeroShotScorer.name


@pytest.mark.parametrize("kind", ["empty", "missing", "unset"])
def test_no_shipped_model_serves_zero_shot_with_one_log_line(tmp_path, sqlite_url, tiny_encoder, caplog, kind):
    folder = {"empty": tmp_path / "empty", "missing": tmp_path / "nowhere", "unset": None}[kind]
    if kind == "empty":
        folder.mkdir()
        (folder / "README.md").write_text("the released weights go here")
    caplog.set_level(logging.INFO, logger="app.registry.default_matcher")
    with serving(_settings(tmp_path, sqlite_url, folder), tiny_encoder) as client:
        services = _services(client)
        assert isinstance(services.runtime.pipeline.scorer, ZeroShotScorer)
        assert model_versions.list_versions(services.factory, "matcher") == []
        assert client.get("/readyz").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "app.registry.default_matcher"]
    assert len(lines) == 1 and "zero-shot" in lines[0] and "productmatch train default" in lines[0], lines
    assert (str(folder) if folder else "DEFAULT_MATCHER is empty") in lines[0]


def test_a_promoted_matcher_wins_over_the_shipped_default(tmp_path, db_url, tiny_encoder, default_folder):  # noqa: F811
    # The same cross-encoder without its head: a plain matcher folder a user might promote.
    plain = tmp_path / "plain"
    shutil.copytree(default_folder, plain)
    (plain / HEAD_FILE).unlink()
    settings = _settings(tmp_path, db_url, default_folder)
    with serving(settings, tiny_encoder) as client:
        services = _services(client)
        shipped = services.runtime.pipeline.scorer.name
        from app.registry import folders

        user = folders.register(services.factory, plain, settings.model_dir)
        model_versions.activate(services.factory, user.version)
        assert services.switch_if_needed() is True
        scorer = services.runtime.pipeline.scorer
        assert isinstance(scorer, CrossEncoderScorer) and scorer.name == user.version  # no head: served as before
    with serving(settings, tiny_encoder) as client:
        services = _services(client)
        assert services.runtime.pipeline.scorer.name == user.version, "a restart keeps the user's matcher"
        assert model_versions.get(services.factory, shipped).status == model_versions.RETIRED


def test_rollback_of_the_default_holds_and_a_new_release_replaces_it(
    tmp_path,
    sqlite_url,
    tiny_encoder,
    default_folder,  # noqa: F811
):
    settings = _settings(tmp_path, sqlite_url, default_folder)
    with serving(settings, tiny_encoder) as client:
        services = _services(client)
        first = services.runtime.pipeline.scorer.name
        model_versions.deactivate(services.factory, "matcher")  # what a rollback to nothing does
    with serving(settings, tiny_encoder) as client:
        services = _services(client)
        assert isinstance(services.runtime.pipeline.scorer, ZeroShotScorer), "the rollback is not undone"
        model_versions.activate(services.factory, first)  # promoted by hand again
    release = with_head(default_folder, tmp_path / "release-2", intercept=0.25)
    with serving(_settings(tmp_path, sqlite_url, release), tiny_encoder) as client:
        services = _services(client)
        second = services.runtime.pipeline.scorer.name
        assert second != first and second == check_folder(release)
        assert model_versions.get(services.factory, first).status == model_versions.RETIRED
        assert model_versions.previous(services.factory, "matcher").version == first  # rollback target


def test_a_catalogue_calibration_overrides_the_head_thresholds(
    tmp_path,
    sqlite_url,
    tiny_encoder,
    default_folder,  # noqa: F811
):
    with serving(_settings(tmp_path, sqlite_url, default_folder), tiny_encoder) as client:
        services = _services(client)
        scorer = services.runtime.pipeline.scorer
        key = scorer_key(scorer, services.encoder.model_id)
        assert key == f"matcher:{scorer.name}"
        calibrations.store(services.factory, _calibration(key, scorer.name, 0.77, 0.33))
        assert services.refresh_decider() is True
        decider = services.runtime.pipeline.decider
        assert isinstance(decider, CalibratedDecider) and (decider.match_threshold, decider.review_threshold) == (
            0.77,
            0.33,
        )
        _catalogue(client, 3)
        body = client.post("/v1/match", json={"offer": OFFER, "top_k": 3}).json()
        assert body["thresholds"] == {"match": 0.77, "review": 0.33}
        assert body["model_versions"]["calibration"] == str(decider.calibration_id)


def _calibration(key: str, scorer: str, match_at: float, review_at: float) -> dict[str, Any]:
    return {
        "scorer_key": key,
        "scorer": scorer,
        "method": "platt",
        "calibrator": {"kind": "identity"},
        "target_precision": 0.95,
        "target_reached": True,
        "review_probability": 0.2,
        "match_threshold": match_at,
        "review_threshold": review_at,
        "own_match_threshold": 0.5,
        "own_review_threshold": 0.2,
        "n_labels": 40,
        "n_positive": 20,
        "n_negative": 20,
        "n_skipped": 0,
        "n_accepted": 10,
        "precision": 0.96,
        "precision_low": 0.8,
        "precision_high": 0.99,
        "recall": 0.5,
        "match_probability": 0.9,
        "labels_through": 0,
    }


def test_the_default_serves_in_the_precision_setting(tmp_path, sqlite_url, tiny_encoder, default_folder, monkeypatch):  # noqa: F811
    monkeypatch.delenv("PRECISION")  # the suite's fp32 pin
    with serving(_settings(tmp_path, sqlite_url, default_folder, precision="bf16"), tiny_encoder) as client:
        scorer = _services(client).runtime.pipeline.scorer
        assert isinstance(scorer, HeadScorer) and scorer.precision == "bf16"
        assert scorer.matcher.model.precision == "bf16" and scorer.matcher.bi_encoder.precision == "bf16"
        _catalogue(client, 3)
        body = client.post("/v1/match", json={"offer": OFFER, "top_k": 3}).json()
        assert body["model_versions"]["scorer"] == scorer.name and len(body["candidates"]) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no-head", "has no head.json"),
        ("no-calibration", f"has no {CALIBRATION_FILE}"),
        ("bad-head", "unreadable head.json"),
        ("pickle", "pickle"),
    ],
)
def test_a_broken_default_folder_fails_startup_naming_it(
    tmp_path,
    sqlite_url,
    tiny_encoder,
    default_folder,  # noqa: F811
    change,
    message,
):
    broken = tmp_path / "broken"
    shutil.copytree(default_folder, broken)
    if change == "no-head":
        (broken / HEAD_FILE).unlink()
    elif change == "no-calibration":
        (broken / CALIBRATION_FILE).unlink()
    elif change == "bad-head":
        (broken / HEAD_FILE).write_text('{"format": 1, "kind": "logistic"}')
    else:
        (broken / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(DefaultMatcherError, match=message):
        check_folder(broken)
    with serving(_settings(tmp_path, sqlite_url, broken), tiny_encoder) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "DEFAULT_MATCHER=" in ready.json()["error"] and str(broken) in ready.json()["error"]
        assert client.post("/v1/match", json={"offer": OFFER}).status_code == 503


def test_settings_scorer_and_default_matcher(tmp_path) -> None:
    assert Settings.model_fields["default_matcher"].default == SHIPPED_DEFAULT_MATCHER
    assert SHIPPED_DEFAULT_MATCHER == Path(__file__).resolve().parents[3] / "artefacts" / "default-matcher"
    assert (SHIPPED_DEFAULT_MATCHER / "README.md").is_file()
    assert Settings.model_fields["scorer"].default == "default"
    assert make_settings(tmp_path, "sqlite://", scorer="Zero-Shot").scorer == "zero-shot"
    assert make_settings(tmp_path, "sqlite://", default_matcher="  ").default_matcher is None
    with pytest.raises(ValueError, match="SCORER must be one of default, zero-shot"):
        make_settings(tmp_path, "sqlite://", scorer="cross-encoder")


def test_processes_starting_together_install_one_version(tmp_path, db_url, default_folder):  # noqa: F811
    settings = _settings(tmp_path, db_url, default_folder)
    settings.ensure_dirs()
    engines = [make_engine(settings.database_url) for _ in range(3)]
    barrier = threading.Barrier(len(engines))
    versions: list[str] = []
    errors: list[BaseException] = []

    def start(engine: Any) -> None:
        try:
            barrier.wait()
            row = install_default_matcher(settings, make_session_factory(engine))
            assert row is not None
            versions.append(row.version)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    factory = make_session_factory(engines[0])
    try:
        assert not errors, errors
        assert len(versions) == 3 and len(set(versions)) == 1
        assert [r.version for r in model_versions.list_versions(factory, "matcher")] == versions[:1]
        assert model_versions.active(factory, "matcher").version == versions[0]
        assert [p.name for p in (settings.model_dir / "versions").iterdir()] == versions[:1]  # type: ignore[operator]
    finally:
        for engine in engines:
            engine.dispose()


def test_the_place_readme_is_not_part_of_the_version(tmp_path, sqlite_url, default_folder):  # noqa: F811
    from app.registry import folders

    documented = tmp_path / "documented"
    shutil.copytree(default_folder, documented)
    (documented / "README.md").write_text("what goes in this folder")
    assert folders.folder_digest(documented) == folders.folder_digest(default_folder)
    assert check_folder(documented) == check_folder(default_folder)
    settings = _settings(tmp_path, sqlite_url, documented)
    factory = make_session_factory(make_engine(settings.database_url))
    with pytest.raises(ValueError, match="must end with the folder digest"):
        folders.register(factory, documented, settings.model_dir, name="default-not-its-digest")
    row = folders.register(factory, documented, settings.model_dir, name=check_folder(documented))
    assert not (Path(row.path) / "README.md").exists() and (Path(row.path) / HEAD_FILE).is_file()
    (documented / "README.md").write_text("edited")
    assert install_default_matcher(settings, factory).version == row.version
