"""The active matcher scores in the serving precision; its calibration is reused as it is."""

from __future__ import annotations

import time

import pytest

from app.pipeline.rerank import CrossEncoderScorer
from app.registry import folders
from models.precision import bf16_native
from tests.app.registry.test_matcher_serving import matcher_folder  # noqa: F401 - the module's fixture
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.helpers import product, wait_job

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

OFFER = {"title": product(3)["title"]}
CANDIDATES = [product(n) for n in range(1, 9)]


def _scores(scorer: CrossEncoderScorer) -> list[float]:
    return [c.score for c in scorer.score(OFFER, CANDIDATES, [0.5] * len(CANDIDATES))]


def test_scorer_runs_in_the_asked_precision(matcher_folder):  # noqa: F811 - the imported fixture
    folder = str(matcher_folder)
    calibrated = CrossEncoderScorer("v1", folder)  # None: the precision its calibration was fitted in
    trained = str(calibrated.manifest.settings.get("precision") or "fp32")
    assert calibrated.precision == (trained if trained == "fp32" or bf16_native() else "fp32")
    fp32 = CrossEncoderScorer("v1", folder, precision="fp32")
    bf16 = CrossEncoderScorer("v1", folder, precision="bf16")
    int8 = CrossEncoderScorer("v1", folder, precision="int8")
    assert (fp32.precision, bf16.precision, int8.precision) == ("fp32", "bf16", "int8")
    assert (fp32.model.precision, bf16.model.precision) == ("fp32", "bf16")
    assert (bf16.quantize, int8.quantize) == ("none", "int8")
    assert bf16.calibration == fp32.calibration, "bf16 keeps the calibration and thresholds"
    reference = _scores(fp32)
    for other in (bf16, int8):
        assert max(abs(a - b) for a, b in zip(reference, _scores(other))) < 0.1
    with pytest.raises(ValueError, match="contradicts"):
        CrossEncoderScorer("v1", folder, quantize="int8", precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        CrossEncoderScorer("v1", folder, precision="fp16")


@pytest.mark.parametrize(
    ("values", "expected"), [({"precision": "bf16"}, "bf16"), ({"matcher_quantize": "int8"}, "int8")]
)
def test_the_promoted_matcher_serves_in_the_setting(
    tmp_path,
    db_url,
    tiny_encoder,
    matcher_folder,  # noqa: F811 - the imported fixture
    monkeypatch,
    values,
    expected,
):
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.delenv("PRECISION")  # the suite's fp32 pin; each case sets its own
    settings = make_settings(tmp_path / "var", db_url, **values)
    with TestClient(create_app(settings, encoder=tiny_encoder, background_load=False)) as client:
        for body in CANDIDATES:
            client.put(
                f"/v1/products/{body['external_id']}", json={k: v for k, v in body.items() if k != "external_id"}
            )
        services = client.app.state.services
        row = folders.register(services.factory, matcher_folder, settings.model_dir)
        res = client.post(f"/v1/admin/models/{row.version}/promote", headers=ADMIN)
        assert wait_job(client, res.json()["job_id"])["state"] == "completed"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and services.runtime.pipeline.scorer.name != row.version:
            time.sleep(0.1)
        scorer = services.runtime.pipeline.scorer
        assert scorer.name == row.version and scorer.precision == expected
        body = client.post("/v1/match", json={"offer": OFFER, "top_k": 3}).json()
        assert body["model_versions"]["scorer"] == row.version and len(body["candidates"]) == 3
