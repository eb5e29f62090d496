"""Retraining the matcher from feedback starts from the serving default matcher's weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from app.db import model_versions
from app.jobs.context import JobContext, JobFailed
from app.registry import folders
from app.retrain.job import matcher_start
from app.schemas.retrain import RetrainRequest
from models.match_head import HEAD_FILE
from tests.app.registry.default_matcher_fixtures import default_folder  # noqa: F401 - the module's fixture
from tests.app.retrain.test_retrain_api import BODY, _catalogue_and_labels
from tests.conftest import make_settings
from tests.helpers import wait_job


def _context(settings, factory) -> JobContext:  # type: ignore[no-untyped-def]
    def no_encoder():  # type: ignore[no-untyped-def]
        raise AssertionError("choosing the start needs no encoder")

    return JobContext(settings, factory, no_encoder)


def _request(**values: object) -> RetrainRequest:
    return RetrainRequest.model_validate({"target": "matcher", **values})


def test_the_start_follows_the_serving_matcher(client, settings, tmp_path, default_folder) -> None:  # noqa: F811
    factory = client.app.state.services.factory
    ctx = _context(settings.model_copy(update={"retrain_backbone": "some-backbone"}), factory)
    assert matcher_start(ctx, _request()) == "some-backbone"  # nothing active: the backbone
    with pytest.raises(JobFailed, match="no matcher is active"):
        matcher_start(ctx, _request(start="active"))

    default = folders.register(factory, default_folder, settings.model_dir)
    model_versions.activate(factory, default.version)
    assert matcher_start(ctx, _request()) == default.path
    assert matcher_start(ctx, _request(start="backbone")) == "some-backbone"
    assert matcher_start(ctx, _request(arch="vanilla")) == "some-backbone"  # the default is LEA
    with pytest.raises(JobFailed, match="is 'lea', not arch='vanilla'"):
        matcher_start(ctx, _request(start="active", arch="vanilla"))
    zero_shot = _context(ctx.settings.model_copy(update={"scorer": "zero-shot"}), factory)
    assert matcher_start(zero_shot, _request()) == "some-backbone"  # not serving: not the start

    # A plain matcher is continued from only when asked.
    plain = tmp_path / "plain"
    shutil.copytree(default_folder, plain)
    (plain / HEAD_FILE).unlink()
    user = folders.register(factory, plain, settings.model_dir)
    model_versions.activate(factory, user.version)
    assert matcher_start(ctx, _request()) == "some-backbone"
    assert matcher_start(ctx, _request(start="active")) == user.path
    with pytest.raises(ValueError, match="start"):
        _request(start="scratch")


def test_a_retrain_continues_from_the_shipped_default(
    tmp_path: Path,
    sqlite_url: str,
    tiny_encoder,
    tiny_encoder_dir: Path,
    default_folder: Path,  # noqa: F811
    admin_headers,
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(
        tmp_path / "var",
        sqlite_url,
        default_matcher=default_folder,
        encoder=str(tiny_encoder_dir),
        retrain_backbone=str(tiny_encoder_dir),
        retrain_min_labels=20,
        job_lease_seconds=30.0,
    )
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        factory = client.app.state.services.factory
        shipped = model_versions.active(factory, "matcher")
        assert shipped is not None and shipped.version.startswith("default-")
        _catalogue_and_labels(client)
        body = BODY | {"arch": "lea", "augment": "none", "promote": "never"}
        res = client.post("/v1/admin/retrain", json=body, headers=admin_headers)
        job = wait_job(client, res.json()["job_id"], timeout=240)
        assert job["state"] == "completed", job
        matcher = job["result"]["matcher"]
        assert matcher["started_from"] == shipped.path and matcher["gate"]["against"] == shipped.version
        trained = model_versions.get(factory, matcher["version"])
        assert trained.manifest["backbone"] == shipped.path
    # Fine-tuned from the default's weights: far closer to them than to the configured backbone's.
    new = load_file(str(Path(trained.path) / "model.safetensors"))
    start = load_file(str(Path(shipped.path) / "model.safetensors"))
    backbone = load_file(str(tiny_encoder_dir / "model.safetensors"))
    key = next(k for k in new if k.endswith("word_embeddings.weight"))
    other = next(k for k in backbone if k.endswith("word_embeddings.weight"))
    to_start = (new[key].float() - start[key].float()).abs().mean()
    to_backbone = (new[key].float() - backbone[other].float()).abs().mean()
    assert to_start < 0.1 * to_backbone
    assert app.state.unhandled_errors == 0
