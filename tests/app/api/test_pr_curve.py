"""GET /v1/admin/models/{version}/pr-curve: the precision/recall curve a trained matcher keeps in
its calibration.json, for the Models page's chart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.registry import folders
from models.artefacts import CALIBRATION_FILE, Manifest, write_manifest
from models.bi_encoder import BiEncoder
from models.matcher_io import load_matcher, score_pairs
from tests.conftest import TINY_CONFIG
from tests.training.test_train_matcher import TINY, tiny_dataset
from training.metrics import pr_curve
from training.train_matcher import serialize_pairs, train_matcher


@pytest.fixture(scope="module")
def matcher_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pr-curve-matcher")
    train_matcher(tiny_dataset(), folder, arch="lea", epochs=1, batch_size=8, seed=1, tiny_config=TINY, progress=False)
    return folder


def _url(version: str) -> str:
    return f"/v1/admin/models/{version}/pr-curve"


def test_pr_curve_of_a_trained_matcher(client, admin_headers, settings, matcher_folder: Path) -> None:
    services = client.app.state.services
    row = folders.register(services.factory, matcher_folder, settings.model_dir)

    assert client.get(_url(row.version)).status_code == 401
    assert client.get(_url(row.version), headers={"Authorization": "Bearer wrong"}).status_code == 403

    res = client.get(_url(row.version), headers=admin_headers)
    assert res.status_code == 200, res.text
    body = res.json()
    calibration = json.loads((matcher_folder / CALIBRATION_FILE).read_text(encoding="utf-8"))
    assert body["version"] == row.version
    assert body["threshold"] == pytest.approx(calibration["threshold"])
    assert 0.0 <= body["threshold"] <= 1.0
    points = body["points"]
    assert len(points) == 50
    assert [p["threshold"] for p in points] == pytest.approx(np.linspace(0.0, 1.0, 50))
    assert all(0.0 <= p["precision"] <= 1.0 and 0.0 <= p["recall"] <= 1.0 for p in points)
    assert points[0]["recall"] == 1.0  # every validation pair has probability >= 0
    recalls = [p["recall"] for p in points]
    assert recalls == sorted(recalls, reverse=True)

    # The curve is the validation split's, scored by the saved model and calibrator.
    model, calibrator, cal, _ = load_matcher(matcher_folder)
    valid = serialize_pairs(tiny_dataset().split("valid"), cal["fields"])
    _, probs = score_pairs(model, calibrator, [(a, b) for a, b, _ in valid])
    expected = pr_curve(probs, np.array([y for _, _, y in valid]))
    assert [p["recall"] for p in points] == pytest.approx([p["recall"] for p in expected])
    assert [p["precision"] for p in points] == pytest.approx([p["precision"] for p in expected])


def test_pr_curve_refusals(client, admin_headers, settings, matcher_folder: Path, tmp_path: Path) -> None:
    services = client.app.state.services
    res = client.get(_url("matcher-nope"), headers=admin_headers)
    assert res.status_code == 404 and "not found" in res.json()["detail"]

    encoder_folder = tmp_path / "encoder"
    torch.manual_seed(3)
    BiEncoder.from_config(TINY_CONFIG, max_length=32).save(encoder_folder)
    write_manifest(encoder_folder, Manifest(kind="bi-encoder", backbone="tiny", metrics={"recall@10": 0.5}))
    encoder = folders.register(services.factory, encoder_folder, settings.model_dir)
    res = client.get(_url(encoder.version), headers=admin_headers)
    assert res.status_code == 409 and "bi-encoder" in res.json()["detail"]

    # A matcher trained before pr_curve was recorded: 404 that says why.
    old = tmp_path / "old-matcher"
    shutil.copytree(matcher_folder, old)
    calibration = json.loads((old / CALIBRATION_FILE).read_text(encoding="utf-8"))
    del calibration["valid"]["pr_curve"]
    (old / CALIBRATION_FILE).write_text(json.dumps(calibration), encoding="utf-8")
    row = folders.register(services.factory, old, settings.model_dir)
    res = client.get(_url(row.version), headers=admin_headers)
    assert res.status_code == 404
    assert "no precision/recall curve" in res.json()["detail"] and "retrain" in res.json()["detail"]

    (Path(row.path) / CALIBRATION_FILE).unlink()
    res = client.get(_url(row.version), headers=admin_headers)
    assert res.status_code == 404 and CALIBRATION_FILE in res.json()["detail"]
