"""The web UI end to end: each page driven in a real headless Chromium against a live server,
through the same JSON API a script would use. One screenshot per page under
test-output/screenshots/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from app.db import feedback as feedback_repo
from app.pipeline.scoring import Decider
from app.registry import store
from models.artefacts import Manifest, write_manifest
from models.bi_encoder import BiEncoder
from tests.conftest import TINY_CONFIG
from tests.e2e.conftest import PRODUCT_COUNT, LiveServer, screenshot

pytestmark = pytest.mark.e2e

expect: Any = None


@pytest.fixture(autouse=True)
def _playwright_expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    expect = playwright_expect


def test_pages_share_the_nav_and_stay_out_of_the_schema(page, live_server: LiveServer) -> None:
    page.goto("/ui")
    expect(page).to_have_url(re.compile(r"/ui/catalogue$"))
    nav = page.locator("header nav a")
    expect(nav).to_have_text(["Catalogue", "Match tester", "Review queue", "Models", "Jobs"])
    page.get_by_role("link", name="Jobs").click()
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("nav a.active")).to_have_text("Jobs")
    assert live_server.http.get("/ui/nope").status_code == 404
    assert live_server.http.get("/ui/static/../routes.py").status_code == 404
    paths = live_server.http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


def test_catalogue_pages_looks_up_and_escapes(page, live_server: LiveServer, screenshot_dir: Path) -> None:
    hostile = "Evil <img src=x onerror=window.__pwned=1> <b>bold</b> widget"
    res = live_server.http.put("/v1/products/zz-hostile", json={"title": hostile, "brand": "<i>Acme</i>"})
    assert res.status_code == 201, res.text

    total = len(live_server.http.get("/v1/products", params={"limit": 500}).json()["items"])
    assert PRODUCT_COUNT < total <= 50
    page.goto("/ui/catalogue")
    rows = page.locator("#product-rows tr")
    expect(rows).to_have_count(25)
    expect(rows.first.locator("td").first).to_have_text("p-00001")
    expect(page.locator("#page-info")).to_contain_text("page 1")

    page.locator("#next-page").click()
    expect(page.locator("#page-info")).to_contain_text("page 2")
    expect(rows).to_have_count(total - 25)
    expect(rows.first.locator("td").first).to_have_text("p-00026")
    expect(page.locator("#next-page")).to_be_disabled()
    expect(rows.filter(has_text="zz-hostile").locator("td").nth(1)).to_have_text(hostile)  # shown as text, never parsed
    assert page.locator("#product-rows img, #product-rows b, #product-rows i").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.locator("#prev-page").click()
    expect(rows.first.locator("td").first).to_have_text("p-00001")

    page.locator("#list-brand").fill("Globex")
    page.locator("#list-form button[type=submit]").click()
    expect(rows.first.locator("td").nth(2)).to_have_text("Globex")
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"Globex"}

    page.locator("#lookup-id").fill("p-00007")
    page.locator("#lookup-form button[type=submit]").click()
    expect(page.locator("#product-title")).to_have_text("Acme Widget Model 7 blue edition")
    expect(page.locator("#product-fields")).to_contain_text("17.00 EUR")

    page.locator("#lookup-id").fill("no-such-product")
    page.locator("#lookup-form button[type=submit]").click()
    expect(page.locator("#lookup-error")).to_have_text("404: product 'no-such-product' not found")
    expect(page.locator("#product-detail")).to_be_hidden()

    page.goto("/ui/catalogue?id=p-00003")
    expect(page.locator("#product-title")).to_have_text("Acme Widget Model 3 red edition")
    screenshot(page, screenshot_dir, "catalogue")


def test_match_tester_shows_candidates_decision_and_word_pairs(
    page, live_server: LiveServer, screenshot_dir: Path
) -> None:
    page.goto("/ui/match")
    page.locator("#m-title").fill("Acme Widget Model 12 edition")
    page.locator("#m-brand").fill("Acme")
    page.locator("#m-price").fill("22")
    page.locator("#m-currency").fill("eur")
    page.locator("#m-k").fill("4")
    page.locator("#m-explain").check()
    with page.expect_request("**/v1/match") as sent:
        page.locator("#m-submit").click()
    body = json.loads(sent.value.post_data or "{}")
    assert body == {
        "offer": {"title": "Acme Widget Model 12 edition", "brand": "Acme", "currency": "eur", "price": 22},
        "top_k": 4,
        "explain": True,
    }
    expect(page.locator("#match-result")).to_be_visible()
    candidates = page.locator("#candidate-rows tr.candidate")
    expect(candidates).to_have_count(4)
    expect(page.locator("#decision")).to_have_text(re.compile(r"^(match|review|no_match)$"))
    assert page.locator("#decision").get_attribute("class").startswith("decision decision-")
    expect(page.locator("#model-versions")).to_contain_text("encoder=")
    expect(page.locator("#thresholds")).to_contain_text("match=")
    expect(page.locator("#candidate-rows tr.explain").first).to_contain_text("↔")
    assert page.locator("#candidate-rows .pairs li").count() > 0
    expect(candidates.first.locator("td").nth(1)).to_have_text(re.compile(r"^p-\d{5}$"))
    score = float(candidates.first.locator("td.score").inner_text())
    assert 0.0 <= score <= 1.01
    screenshot(page, screenshot_dir, "match")

    # The API's validation message reaches the user: a title with no letter or digit.
    page.locator("#m-title").fill("!!!")
    page.locator("#m-submit").click()
    expect(page.locator("#match-error")).to_contain_text("422: offer.title")
    expect(page.locator("#match-error")).to_contain_text("letter or digit")
    expect(page.locator("#match-result")).to_be_hidden()


def test_review_queue_labels_items_and_they_leave(page, live_server: LiveServer, screenshot_dir: Path) -> None:
    services = live_server.services
    pipeline = services.runtime.pipeline
    saved = pipeline.decider
    pipeline.decider = Decider(1.01, 0.0)  # the tiny encoder scores near 1: push everything to review
    try:
        for title in ("Globex Widget Model 5 review", "Initech Widget Model 9 review"):
            res = live_server.http.post("/v1/match", json={"offer": {"title": title, "brand": "Globex"}, "top_k": 3})
            assert res.status_code == 200 and res.json()["decision"] == "review", res.text
    finally:
        pipeline.decider = saved
    open_items = {r.offer["title"]: r for r in feedback_repo.open_reviews(services.factory, 500)}
    first = open_items["Globex Widget Model 5 review"]
    second = open_items["Initech Widget Model 9 review"]

    page.goto("/ui/review")
    cards = page.locator("article.review-item")
    expect(cards.filter(has_text="Globex Widget Model 5 review")).to_have_count(1)
    expect(cards.filter(has_text="Initech Widget Model 9 review")).to_have_count(1)
    card = page.locator(f'article[data-review-id="{first.id}"]')
    expect(card.locator("tr.candidate")).to_have_count(3)
    page.locator("#reviewer").fill("ann")
    screenshot(page, screenshot_dir, "review")

    target = first.candidates[1]["external_id"]
    card.locator(f'tr.candidate[data-external-id="{target}"]').get_by_role(
        "button", name=f"match {target}", exact=True
    ).click()
    expect(card).to_have_count(0)
    expect(page.locator("#review-status")).to_contain_text(f"{target} as match (by ann)")

    other = page.locator(f'article[data-review-id="{second.id}"]')
    rejected = second.candidates[0]["external_id"]
    other.get_by_role("button", name=f"no match {rejected}", exact=True).click()
    expect(other).to_have_count(0)

    labels = live_server.http.get("/v1/feedback", params={"product_external_id": target}).json()["items"]
    assert any(
        lb["review_id"] == first.id and lb["label"] == "match" and lb["reviewer"] == "ann" and lb["source"] == "review"
        for lb in labels
    )
    labels = live_server.http.get("/v1/feedback", params={"product_external_id": rejected}).json()["items"]
    assert any(lb["review_id"] == second.id and lb["label"] == "no_match" for lb in labels)
    still_open = {r.id for r in feedback_repo.open_reviews(services.factory, 500)}
    assert first.id not in still_open and second.id not in still_open

    page.reload()  # the server agrees: both are gone after a reload too
    expect(page.locator("#reviewer")).to_have_value("ann")
    expect(page.locator(f'article[data-review-id="{first.id}"]')).to_have_count(0)
    expect(page.locator(f'article[data-review-id="{second.id}"]')).to_have_count(0)


def _tiny_artefact(folder: Path) -> Path:
    torch.manual_seed(7)
    BiEncoder.from_config(TINY_CONFIG, max_length=32).save(folder)
    write_manifest(folder, Manifest(kind="bi-encoder", backbone="tiny", metrics={"recall@10": 0.75}))
    return folder


def test_models_token_versions_promote_rollback_retrain(
    page, live_server: LiveServer, screenshot_dir: Path, tmp_path: Path
) -> None:
    services = live_server.services
    row = store.register(services.factory, _tiny_artefact(tmp_path / "tiny"), services.settings.model_dir)

    page.goto("/ui/models")
    page.locator("#admin-token").fill("not-the-token")
    page.locator("#token-form button[type=submit]").click()
    expect(page.locator("#models-error")).to_have_text("403: the token is not an admin token")
    page.locator("#forget-token").click()
    page.locator("#versions-form button[type=submit]").click()
    expect(page.locator("#models-error")).to_have_text("401: admin bearer token required")

    page.locator("#admin-token").fill(live_server.admin_token)
    page.locator("#token-form button[type=submit]").click()
    version_row = page.locator(f'tr.version[data-version="{row.version}"]')
    expect(version_row).to_contain_text("registered")
    expect(version_row).to_contain_text("recall@10=0.750")
    expect(page.locator("#models-error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('productmatch.adminToken')") == live_server.admin_token

    version_row.get_by_role("button", name="Promote").click()
    job = page.locator("#model-job")
    expect(job.locator(".state")).to_have_text("completed", timeout=60_000)
    expect(job.locator("dd.job-id")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    expect(job).to_contain_text("promote")
    page.locator("#versions-form button[type=submit]").click()
    expect(version_row).to_contain_text("active")
    expect(version_row.get_by_role("button", name="Promote")).to_be_disabled()
    screenshot(page, screenshot_dir, "models")

    page.locator("#rollback-kind").select_option("bi-encoder")
    page.locator("#rollback-form button[type=submit]").click()
    expect(job).to_contain_text("rollback")
    expect(job.locator(".state")).to_have_text("completed", timeout=60_000)
    assert store.active(services.factory, "bi-encoder") is None

    promote_job = job.locator("dd.job-id").inner_text()
    # Retrain through the real endpoint: the form's request, and the real job followed to its end
    # (this catalogue has no feedback labels, so the job fails and says why).
    page.locator("#retrain-target").select_option("both")
    page.locator("#retrain-feedback").check()
    page.locator("#retrain-sources").fill("")
    page.locator("#retrain-epochs").fill("3")
    page.locator("#retrain-seed").fill("42")
    page.locator("#retrain-arch").select_option("vanilla")
    page.locator("#retrain-promote").select_option("never")
    with page.expect_request("**/v1/admin/retrain") as request_info:
        page.locator("#retrain-form button[type=submit]").click()
    request = request_info.value
    assert json.loads(request.post_data or "{}") == {
        "target": "both",
        "sources": ["feedback"],
        "epochs": 3,
        "seed": 42,
        "arch": "vanilla",
        "noise": "both",
        "pseudo_labels": False,
        "promote": "never",
    }
    assert request.headers["authorization"] == f"Bearer {live_server.admin_token}"
    expect(job.locator("dd.job-id")).not_to_have_text(promote_job)
    expect(job.locator(".state")).to_have_text("failed", timeout=60_000)
    expect(job.locator(".job-message")).to_contain_text("at least")
    expect(job).to_contain_text("retrain")

    # The endpoint's refusals reach the user as they are.
    page.locator("#retrain-sources").fill("no-such-benchmark")
    page.locator("#retrain-form button[type=submit]").click()
    expect(page.locator("#model-job-error")).to_have_text(re.compile(r"^422: .*no-such-benchmark"))
    page.locator("#admin-token").fill("wrong-token")
    page.locator("#token-form button[type=submit]").click()
    page.locator("#retrain-form button[type=submit]").click()
    expect(page.locator("#model-job-error")).to_have_text("403: the token is not an admin token")


def test_jobs_upload_follow_and_lookup(page, live_server: LiveServer, screenshot_dir: Path, tmp_path: Path) -> None:
    upload = tmp_path / "offers.csv"
    upload.write_text(
        "external_id,title,brand,price\n"
        "up-1,Uploaded gadget one,Acme,3.5\n"
        "up-2,Uploaded gadget two,Globex,4\n"
        "up-3,,Initech,5\n"
        "up-4,Uploaded gadget four,Acme,not-a-price\n",
        encoding="utf-8",
    )
    page.goto("/ui/jobs")
    page.locator("#ingest-file").set_input_files(str(upload))
    page.locator("#ingest-form button[type=submit]").click()
    expect(page.locator("#ingest-status")).to_contain_text("Uploaded offers.csv: job")
    view = page.locator("#job-view")
    expect(view.locator(".state")).to_have_text("completed_with_errors", timeout=60_000)
    job_id = view.locator("dd.job-id").inner_text()
    expect(view).to_contain_text("2 ok, 0 unchanged, 2 failed")
    errors = view.locator("table.job-errors tbody tr")
    expect(errors).to_have_count(2)
    expect(errors.first.locator("td").first).to_have_text("3")
    expect(errors.first.locator("td").nth(1)).to_have_text("title")
    assert live_server.http.get("/v1/products/up-2").status_code == 200
    screenshot(page, screenshot_dir, "jobs")

    page.goto("/ui/jobs")
    page.locator("#job-follow").uncheck()
    page.locator("#job-id").fill(job_id)
    page.locator("#job-form button[type=submit]").click()
    expect(view.locator("dd.job-id")).to_have_text(job_id)
    expect(view).to_contain_text("4 / 4 rows")
    expect(page).to_have_url(re.compile(rf"\?id={job_id}$"))

    page.locator("#job-id").fill("no-such-job")
    page.locator("#job-form button[type=submit]").click()
    expect(page.locator("#job-error")).to_have_text("404: job 'no-such-job' not found")

    page.locator("#ingest-file").set_input_files(files=[{"name": "empty.csv", "mimeType": "text/csv", "buffer": b""}])
    page.locator("#ingest-form button[type=submit]").click()
    expect(page.locator("#ingest-error")).to_contain_text("422")
