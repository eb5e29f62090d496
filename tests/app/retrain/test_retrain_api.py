"""POST /v1/admin/retrain end to end: auth, dedupe, data checks, training, gate, promotion."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.db import model_versions
from tests.conftest import make_settings
from tests.helpers import product, wait_job

N_PRODUCTS = 60


@pytest.fixture
def retrain_client(tmp_path: Path, db_url: str, tiny_encoder, tiny_encoder_dir: Path):
    yield from _client(tmp_path, db_url, tiny_encoder, tiny_encoder_dir)


@pytest.fixture
def sqlite_retrain_client(tmp_path: Path, sqlite_url: str, tiny_encoder, tiny_encoder_dir: Path):
    # Training is database-independent and costs tens of seconds per run: the matcher retrain
    # test covers both databases, the other training paths run once, on SQLite.
    yield from _client(tmp_path, sqlite_url, tiny_encoder, tiny_encoder_dir)


def _client(tmp_path: Path, db_url: str, tiny_encoder, tiny_encoder_dir: Path):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(
        tmp_path / "var",
        db_url,
        encoder=str(tiny_encoder_dir),
        retrain_backbone=str(tiny_encoder_dir),
        retrain_min_labels=20,
        retrain_data_root=tmp_path / "benchmarks",
        retrain_benchmarks={"tiny-bench": "deepmatcher"},
        job_lease_seconds=30.0,
    )
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    assert app.state.unhandled_errors == 0


def _catalogue_and_labels(client, n_labels: int = N_PRODUCTS) -> None:
    for n in range(N_PRODUCTS):
        body = product(n)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code in (200, 201)
    rows = ["offer_title,offer_external_id,offer_brand,product_external_id,label"]
    for n in range(n_labels):
        brand = ["Acme", "Globex", "Initech"][n % 3]
        rows.append(f"widget model {n} by {brand},o-{n},{brand},p-{n:05d},match")
        rows.append(f"widget model {n} by {brand},o-{n},{brand},p-{(n + 7) % N_PRODUCTS:05d},no_match")
    res = client.post("/v1/feedback/import", files={"file": ("labels.csv", "\n".join(rows).encode())})
    assert res.status_code == 200 and res.json()["failed"] == 0, res.text


BODY = {"target": "matcher", "sources": ["feedback"], "epochs": 1, "seed": 3, "noise": "none", "arch": "vanilla"}


def test_retrain_requires_the_admin_token(retrain_client, admin_headers) -> None:
    assert retrain_client.post("/v1/admin/retrain", json=BODY).status_code == 401
    wrong = retrain_client.post("/v1/admin/retrain", json=BODY, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403


def test_retrain_rejects_bad_requests(retrain_client, admin_headers) -> None:
    post = lambda body: retrain_client.post("/v1/admin/retrain", json=body, headers=admin_headers)  # noqa: E731
    unknown = post(BODY | {"sources": ["feedback", "secret-folder"]})
    assert unknown.status_code == 422 and "secret-folder" in unknown.text
    assert post(BODY | {"sources": ["../etc"]}).status_code == 422
    assert post(BODY | {"target": "everything"}).status_code == 422
    assert post(BODY | {"epochs": 0}).status_code == 422
    assert post(BODY | {"sources": ["feedback", "feedback"]}).status_code == 422
    assert post(BODY | {"surprise": 1}).status_code == 422


def test_too_few_labels_fail_the_job_with_a_reason(retrain_client, admin_headers) -> None:
    _catalogue_and_labels(retrain_client, n_labels=5)
    res = retrain_client.post("/v1/admin/retrain", json=BODY, headers=admin_headers)
    assert res.status_code == 202
    job = wait_job(retrain_client, res.json()["job_id"])
    assert job["state"] == "failed" and "at least 20" in job["message"]


def test_matcher_retrain_trains_evaluates_registers_and_gates(retrain_client, admin_headers) -> None:
    _catalogue_and_labels(retrain_client)
    first = retrain_client.post("/v1/admin/retrain", json=BODY | {"promote": "force"}, headers=admin_headers)
    again = retrain_client.post("/v1/admin/retrain", json=BODY | {"promote": "force"}, headers=admin_headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"], "an identical trigger while running is one job"

    job = wait_job(retrain_client, first.json()["job_id"], timeout=240)
    assert job["state"] == "completed", job
    assert job["stage"] == "done" and job["progress"]["fraction"] == 1.0
    result = job["result"]
    splits = result["data"]["splits"]
    assert all(splits[s]["rows"] > 0 for s in ("train", "valid", "test")), splits
    matcher = result["matcher"]
    gate = matcher["gate"]
    assert gate["against"] == "zero-shot-cosine-lexical"
    assert 0.0 <= gate["new"]["f1_clean"] <= 1.0 and gate["new"]["pairs"] == splits["test"]["rows"]
    assert matcher["promoted"] is True  # forced

    factory = retrain_client.app.state.services.factory
    row = model_versions.get(factory, matcher["version"])
    assert row.kind == "matcher" and row.status == "active"
    assert row.metrics["held_out"]["f1_clean"] == gate["new"]["f1_clean"]
    assert Path(row.path).is_dir()

    # The same retrain again on unchanged labels reuses that version instead of a second copy.
    repeat = retrain_client.post("/v1/admin/retrain", json=BODY | {"promote": "force"}, headers=admin_headers)
    assert repeat.json()["job_id"] != first.json()["job_id"]
    repeated = wait_job(retrain_client, repeat.json()["job_id"], timeout=240)
    assert repeated["state"] == "completed", repeated["message"]
    assert repeated["result"]["matcher"]["version"] == matcher["version"]
    assert repeated["result"]["matcher"]["reused"] is True
    assert len(model_versions.list_versions(factory, "matcher")) == 1

    # The next run is gated against the serving version, and "never" leaves it serving.
    res = retrain_client.post("/v1/admin/retrain", json=BODY | {"seed": 4, "promote": "never"}, headers=admin_headers)
    second = wait_job(retrain_client, res.json()["job_id"], timeout=240)
    assert second["state"] == "completed", second
    assert second["result"]["matcher"]["gate"]["against"] == matcher["version"]
    assert second["result"]["matcher"]["promoted"] is False
    assert model_versions.active(factory, "matcher").version == matcher["version"]

    # Rolling back the active version by name; a version that is not active cannot be.
    other = second["result"]["matcher"]["version"]
    refused = retrain_client.post(f"/v1/admin/models/{other}/rollback", headers=admin_headers)
    assert refused.status_code == 409 and "not active" in refused.text
    assert retrain_client.post("/v1/admin/models/nope/rollback", headers=admin_headers).status_code == 404
    back = retrain_client.post(f"/v1/admin/models/{matcher['version']}/rollback", headers=admin_headers)
    assert back.status_code == 202
    assert wait_job(retrain_client, back.json()["job_id"])["state"] == "completed"
    assert model_versions.active(factory, "matcher") is None  # back to the zero-shot scorer


def test_blocker_retrain_promotes_and_reindexes(sqlite_retrain_client, admin_headers) -> None:
    retrain_client = sqlite_retrain_client
    _catalogue_and_labels(retrain_client)
    body = BODY | {"target": "blocker", "promote": "force"}
    job = wait_job(
        retrain_client,
        retrain_client.post("/v1/admin/retrain", json=body, headers=admin_headers).json()["job_id"],
        timeout=240,
    )
    assert job["state"] == "completed", job
    blocker = job["result"]["blocker"]
    for side in ("new", "current"):
        assert 0.0 <= blocker["gate"][side]["recall@1"] <= blocker["gate"][side]["recall@20"] <= 1.0
    assert blocker["promoted"] is True
    factory = retrain_client.app.state.services.factory
    assert model_versions.active(factory, "bi-encoder").version == blocker["version"]
    # Serving follows the promotion: every catalogue product gets a vector of the new model.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = retrain_client.get("/health/ready").json()
        if blocker["version"] in str(health):
            break
        time.sleep(0.2)
    res = retrain_client.post("/v1/match", json={"offer": {"title": "Acme Widget Model 3"}, "top_k": 3})
    assert res.status_code == 200
    assert res.json()["model_versions"]["encoder"] == blocker["version"]


def test_retrain_on_an_allowed_benchmark_folder(sqlite_retrain_client, admin_headers, tmp_path: Path) -> None:
    retrain_client = sqlite_retrain_client
    folder = tmp_path / "benchmarks" / "tiny-bench"
    folder.mkdir(parents=True)
    titles = [f"{b} {n} model {i}" for i, (b, n) in enumerate(zip(["acme", "globex"] * 20, ["cam", "tv"] * 20))]
    (folder / "tableA.csv").write_text("id,title\n" + "\n".join(f"{i},{t}" for i, t in enumerate(titles)) + "\n")
    (folder / "tableB.csv").write_text("id,title\n" + "\n".join(f"{i},{t} new" for i, t in enumerate(titles)) + "\n")
    for split, ids in (("train", range(0, 24)), ("valid", range(24, 32)), ("test", range(32, 40))):
        lines = ["ltable_id,rtable_id,label"]
        for i in ids:
            lines += [f"{i},{i},1", f"{i},{(i + 1) % 40},0"]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    res = retrain_client.post(
        "/v1/admin/retrain", json=BODY | {"sources": ["tiny-bench"], "promote": "never"}, headers=admin_headers
    )
    job = wait_job(retrain_client, res.json()["job_id"], timeout=240)
    assert job["state"] == "completed", job
    assert job["result"]["data"]["sources"]["tiny-bench"]["test_pairs"] == 16
    assert job["result"]["matcher"]["promoted"] is False


def test_noise_detection_and_pseudo_labels_run_in_the_job(sqlite_retrain_client, admin_headers) -> None:
    retrain_client = sqlite_retrain_client
    from app.db.review_queue import queue_for_review

    _catalogue_and_labels(retrain_client)
    factory = retrain_client.app.state.services.factory
    # Review items nobody labelled: their candidates are the unlabelled pool for pseudo-labels.
    queue_for_review(
        factory,
        [
            {
                "offer": {"title": f"unlabelled widget {n}"},
                "candidates": [{"external_id": f"p-{(n + j) % N_PRODUCTS:05d}", "score": 0.5} for j in range(3)],
                "top_score": 0.5,
                "model_versions": {},
            }
            for n in range(20)
        ],
    )
    body = BODY | {"noise": "both", "noise_action": "downweight", "pseudo_labels": True, "epochs": 2}
    res = retrain_client.post("/v1/admin/retrain", json=body, headers=admin_headers)
    job = wait_job(retrain_client, res.json()["job_id"], timeout=300)
    assert job["state"] == "completed", job
    assert job["result"]["data"]["unlabelled_pairs"] == 60
    matcher = job["result"]["matcher"]
    assert matcher["noise"], "the noise detector ran and reported"
    assert matcher["noise"]["restart"] is True, "by default a fresh model retrains on the corrected labels"
    assert matcher["pseudo_labels"], "pseudo-labelled pairs were used"


def test_the_default_noise_handling_is_the_best_measured_variant(sqlite_retrain_client, admin_headers) -> None:
    """No noise field in the body: bmm, downweight, 3-epoch warm-up, gate, restart, hard flags
    (docs/training.md, "Defaults"), as the job runs it and as the model's manifest records it."""
    import json

    retrain_client = sqlite_retrain_client
    _catalogue_and_labels(retrain_client)
    body = {k: v for k, v in BODY.items() if k != "noise"}
    res = retrain_client.post("/v1/admin/retrain", json=body, headers=admin_headers)
    job = wait_job(retrain_client, res.json()["job_id"], timeout=300)
    assert job["state"] == "completed", job
    matcher = job["result"]["matcher"]
    assert matcher["noise"]["warmup_epochs"] == 3 and matcher["noise"]["restart"] is True
    assert len(matcher["noise"]["detections"]) == 1, "one detection, at the end of the warm-up"
    folder = Path(model_versions.get(retrain_client.app.state.services.factory, matcher["version"]).path)
    noise = json.loads((folder / "manifest.json").read_text())["settings"]["noise"]
    assert (noise["method"], noise["action"], noise["warmup_epochs"]) == ("bmm", "downweight", 3)
    assert noise["require_disagreement"] and noise["restart"] and noise["hard_flags"]


def test_signals_noise_detection_runs_once_before_training(sqlite_retrain_client, admin_headers) -> None:
    import json

    retrain_client = sqlite_retrain_client
    _catalogue_and_labels(retrain_client)
    body = BODY | {"noise": "signals", "noise_action": "relabel", "epochs": 2}
    res = retrain_client.post("/v1/admin/retrain", json=body, headers=admin_headers)
    job = wait_job(retrain_client, res.json()["job_id"], timeout=300)
    assert job["state"] == "completed", job
    version = job["result"]["matcher"]["version"]
    folder = Path(model_versions.get(retrain_client.app.state.services.factory, version).path)
    noise = json.loads((folder / "manifest.json").read_text())["settings"]["noise"]
    assert (noise["method"], noise["action"]) == ("signals", "relabel")
    assert not noise["restart"] and noise["warmup_epochs"] is None
    assert noise["signals_encoder"] == str(retrain_client.app.state.services.settings.encoder)
