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

from app.db import model_versions
from app.db.review_queue import open_reviews
from app.pipeline.scoring import Decider
from app.registry import folders
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
    # p-00001 is a Globex product too, so the first row says nothing about whether the filtered
    # page has arrived: wait until no other brand is left in the table.
    brands = rows.locator("td:nth-child(3)")
    expect(brands.filter(has_not_text="Globex")).to_have_count(0)
    expect(brands.first).to_have_text("Globex")
    assert set(brands.all_inner_texts()) == {"Globex"}

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
    with page.expect_response("**/v1/match") as answered:
        page.locator("#m-submit").click()
    body = json.loads(answered.value.request.post_data or "{}")
    api = answered.value.json()
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

    # Both stage scores per candidate: the blocker's cosine and the reranker's score, as the API sent them.
    expect(page.locator("#candidate-table thead")).to_contain_text("Retrieval (blocker cosine)")
    expect(page.locator("#candidate-table thead")).to_contain_text("Reranker score")
    expect(page.locator("#scorer-name")).to_have_text(api["model_versions"]["scorer"])
    for i, c in enumerate(api["candidates"]):
        row = candidates.nth(i)
        expect(row).to_have_attribute("data-external-id", c["external_id"])
        assert float(row.locator("td.retrieval").inner_text()) == pytest.approx(c["retrieval_score"], abs=1e-4)
        assert float(row.locator("td.score").inner_text()) == pytest.approx(c["score"], abs=1e-4)

    # Explanation word pairs are <mark> elements in the candidate title and in the offer title.
    words = re.compile(r"[^\W_]+")
    for i, c in enumerate(api["candidates"]):
        similar = [p for p in c["explanation"] if p["similarity"] > 0]  # pairs of dissimilar words mark nothing
        product_words = {p["product_word"].lower() for p in similar}
        offer_words = {p["offer_word"].lower() for p in similar}
        title_cell = candidates.nth(i).locator("td.title")
        expect(title_cell).to_have_text(c["title"])  # the marks change no text
        marked = [m.lower() for m in title_cell.locator("mark.pair-word").all_inner_texts()]
        assert marked == [w.lower() for w in words.findall(c["title"]) if w.lower() in product_words]
        offer_line = page.locator("#candidate-rows tr.explain").nth(i).locator(".offer-highlight")
        expect(offer_line).to_contain_text(body["offer"]["title"])
        offer_marked = {m.lower() for m in offer_line.locator("mark.pair-word").all_inner_texts()}
        assert offer_marked == {w.lower() for w in words.findall(body["offer"]["title"]) if w.lower() in offer_words}
    first_marks = candidates.first.locator("td.title mark")
    assert first_marks.count() > 0
    assert first_marks.first.evaluate("m => m.tagName + ':' + m.children.length") == "MARK:0"
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
    open_items = {r.offer["title"]: r for r in open_reviews(services.factory, 500)}
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
    still_open = {r.id for r in open_reviews(services.factory, 500)}
    assert first.id not in still_open and second.id not in still_open

    page.reload()  # the server agrees: both are gone after a reload too
    expect(page.locator("#reviewer")).to_have_value("ann")
    expect(page.locator(f'article[data-review-id="{first.id}"]')).to_have_count(0)
    expect(page.locator(f'article[data-review-id="{second.id}"]')).to_have_count(0)


def _queue_for_review(live_server: LiveServer, titles: list[str]) -> None:
    pipeline = live_server.services.runtime.pipeline
    saved = pipeline.decider
    pipeline.decider = Decider(1.01, 0.0)  # the tiny encoder scores near 1: push everything to review
    try:
        for title in titles:
            res = live_server.http.post("/v1/match", json={"offer": {"title": title}, "top_k": 3})
            assert res.status_code == 200 and res.json()["decision"] == "review", res.text
    finally:
        pipeline.decider = saved


def test_review_queue_by_keyboard_only(page, live_server: LiveServer, screenshot_dir: Path) -> None:
    titles = ["Acme Widget Model 2 keyboard", "Hooli Widget Model 4 keyboard", "Initech Widget Model 6 keyboard"]
    _queue_for_review(live_server, titles)
    services = live_server.services
    open_ids = [r.id for r in open_reviews(services.factory, 500)]

    page.goto("/ui/review")
    expect(page.locator("section.shortcuts")).to_contain_text("a or y")
    cards = page.locator("article.review-item")
    expect(cards).to_have_count(len(open_ids))
    current = page.locator("article.review-item.current")
    expect(current).to_have_count(1)
    first_id = open_ids[0]
    expect(current).to_have_attribute("data-review-id", first_id)
    expect(current).to_be_focused()  # the first item has the keyboard focus on load
    expect(page.locator("#review-position")).to_have_text(f"item 1 of {len(open_ids)}")

    # The reviewer's name, then Esc goes back to the current item; no mouse from here on.
    page.locator("#reviewer").focus()
    page.keyboard.type("kim")
    page.keyboard.press("a")  # typed into the field, not a shortcut
    expect(page.locator("#reviewer")).to_have_value("kima")
    page.keyboard.press("Backspace")
    page.keyboard.press("Escape")
    expect(current).to_be_focused()

    selected = current.locator("tr.candidate.selected")
    expect(selected).to_have_count(1)
    expect(selected).to_have_attribute(
        "data-external-id", current.locator("tr.candidate").first.get_attribute("data-external-id")
    )
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("k")  # down, down, up: the second candidate
    second_row = page.locator(f'article[data-review-id="{first_id}"] tr.candidate').nth(1)
    expect(second_row).to_have_class(re.compile(r"\bselected\b"))
    expect(second_row).to_have_attribute("aria-selected", "true")
    chosen = second_row.get_attribute("data-external-id")
    page.keyboard.press("a")
    expect(page.locator(f'article[data-review-id="{first_id}"]')).to_have_count(0)
    expect(page.locator("#review-status")).to_contain_text(f"{chosen} as match (by kim)")
    expect(current).to_have_attribute("data-review-id", open_ids[1])  # the next item, focused
    expect(current).to_be_focused()
    expect(page.locator("#review-position")).to_have_text(f"item 1 of {len(open_ids) - 1}")
    screenshot(page, screenshot_dir, "review-keyboard")

    rejected = current.locator("tr.candidate").first.get_attribute("data-external-id")
    page.keyboard.press("n")
    expect(page.locator(f'article[data-review-id="{open_ids[1]}"]')).to_have_count(0)
    expect(current).to_have_attribute("data-review-id", open_ids[2])
    expect(current).to_be_focused()

    labels = live_server.http.get("/v1/feedback", params={"product_external_id": chosen}).json()["items"]
    assert any(lb["review_id"] == first_id and lb["label"] == "match" and lb["reviewer"] == "kim" for lb in labels)
    labels = live_server.http.get("/v1/feedback", params={"product_external_id": rejected}).json()["items"]
    assert any(lb["review_id"] == open_ids[1] and lb["label"] == "no_match" for lb in labels)
    still_open = [r.id for r in open_reviews(services.factory, 500)]
    assert still_open == open_ids[2:]

    # Label the rest: the page ends empty, and says so.
    for _ in still_open:
        page.keyboard.press("r")
        page.wait_for_function("() => !document.querySelector('article.review-item[data-busy]')")
    expect(cards).to_have_count(0)
    expect(page.locator("#review-empty")).to_be_visible()
    assert open_reviews(services.factory, 500) == []


def _tiny_artefact(folder: Path) -> Path:
    torch.manual_seed(7)
    BiEncoder.from_config(TINY_CONFIG, max_length=32).save(folder)
    write_manifest(folder, Manifest(kind="bi-encoder", backbone="tiny", metrics={"recall@10": 0.75}))
    return folder


def test_models_token_versions_promote_rollback_retrain(
    page, live_server: LiveServer, screenshot_dir: Path, tmp_path: Path
) -> None:
    services = live_server.services
    row = folders.register(services.factory, _tiny_artefact(tmp_path / "tiny"), services.settings.model_dir)

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
    metrics_row = page.locator(f'#metrics-rows tr[data-version="{row.version}"]')
    expect(metrics_row.locator('td[data-metric="recall@10"]')).to_have_text("0.7500")
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
    assert model_versions.active(services.factory, "bi-encoder") is None

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
        "noise": "bmm",
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


def _js_fixed4(value: float) -> str:
    """As the page's fmt(value, 4) writes a number: integers bare, others with 4 decimals."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


@pytest.fixture(scope="module")
def tiny_matcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LEA matcher trained for one epoch on a tiny synthetic DeepMatcher-style dataset."""
    from tests.training.test_train_matcher import TINY, tiny_dataset
    from training.train_matcher import train_matcher

    folder = tmp_path_factory.mktemp("ui-matcher")
    train_matcher(tiny_dataset(), folder, arch="lea", epochs=1, batch_size=8, seed=1, tiny_config=TINY, progress=False)
    return folder


def test_models_metrics_side_by_side_and_pr_chart(
    page, live_server: LiveServer, screenshot_dir: Path, tmp_path: Path, tiny_matcher: Path
) -> None:
    services = live_server.services
    encoder = folders.register(services.factory, _tiny_artefact(tmp_path / "enc"), services.settings.model_dir)
    matcher = folders.register(services.factory, tiny_matcher, services.settings.model_dir)
    model_versions.activate(services.factory, matcher.version)
    try:
        curve = live_server.http.get(
            f"/v1/admin/models/{matcher.version}/pr-curve",
            headers={"Authorization": f"Bearer {live_server.admin_token}"},
        ).json()
        page.goto("/ui/models")
        page.locator("#admin-token").fill(live_server.admin_token)
        page.locator("#token-form button[type=submit]").click()

        # One row per version, one column per metric key any version has.
        expect(page.locator("#metrics-panel")).to_be_visible()
        versions = live_server.http.get(
            "/v1/admin/models", headers={"Authorization": f"Bearer {live_server.admin_token}"}
        ).json()["versions"]
        rows = page.locator("#metrics-rows tr")
        expect(rows).to_have_count(len(versions))
        head = page.locator("#metrics-head th[data-metric]")
        keys = head.evaluate_all("ths => ths.map(th => th.dataset.metric)")
        assert {"recall@10", "valid_f1", "valid_pr_auc", "threshold", "best_epoch"} <= set(keys)
        assert "history" not in keys  # lists are left out
        matcher_row = page.locator(f'#metrics-rows tr[data-version="{matcher.version}"]')
        expect(matcher_row).to_contain_text("active")
        expect(matcher_row.locator('td[data-metric="valid_f1"]')).to_have_text(_js_fixed4(matcher.metrics["valid_f1"]))
        expect(matcher_row.locator('td[data-metric="recall@10"]')).to_have_text("–")
        encoder_row = page.locator(f'#metrics-rows tr[data-version="{encoder.version}"]')
        expect(encoder_row.locator('td[data-metric="recall@10"]')).to_have_text("0.7500")
        expect(encoder_row.locator('td[data-metric="valid_f1"]')).to_have_text("–")

        # The active matcher's precision / recall against threshold, drawn as inline SVG.
        expect(page.locator("#pr-version")).to_have_text(f"({matcher.version})")
        chart = page.locator("#pr-chart svg#pr-chart-svg")
        expect(chart).to_be_visible()
        expect(chart.locator("title").first).to_have_text(re.compile(re.escape(matcher.version)))
        for cls in ("pr-precision", "pr-recall"):
            line = chart.locator(f"polyline.{cls}")
            expect(line).to_have_count(1)
            points = line.get_attribute("points").split()
            assert len(points) == len(curve["points"]) == 50
        # The drawn recall line follows the API's points: x = threshold, y = 1 - recall on the plot.
        xy = [
            tuple(map(float, p.split(","))) for p in chart.locator("polyline.pr-recall").get_attribute("points").split()
        ]
        xs = [x for x, _ in xy]
        assert xs == sorted(xs) and xs[0] < xs[-1]
        top, bottom = min(y for _, y in xy), max(y for _, y in xy)
        recalls = [p["recall"] for p in curve["points"]]
        if max(recalls) > min(recalls):
            assert top < bottom
        threshold = chart.locator("line.pr-threshold").first
        x_at = float(threshold.get_attribute("x1"))
        assert xs[0] <= x_at <= xs[-1]
        assert x_at == pytest.approx(xs[0] + curve["threshold"] * (xs[-1] - xs[0]), abs=0.2)
        expect(chart).to_contain_text(f"threshold {curve['threshold']:.3f}")
        assert page.locator("script:not([src])").count() == 0
        screenshot(page, screenshot_dir, "models-chart")
    finally:
        model_versions.deactivate(services.factory, "matcher")


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


def test_catalogue_upload_shows_progress_and_row_errors(
    page, live_server: LiveServer, screenshot_dir: Path, tmp_path: Path
) -> None:
    good = [
        {"external_id": f"cu-{n:03d}", "title": f"Catalogue upload gadget {n}", "brand": "Acme", "price": n}
        for n in range(1, 120)
    ]
    lines = [json.dumps(row) for row in good]
    lines[9] = json.dumps({"external_id": "cu-bad-1", "brand": "Acme"})  # no title
    lines[40] = "{not json"
    lines[80] = json.dumps({"external_id": "cu-bad-2", "title": "Priced wrong", "price": "cheap"})
    upload = tmp_path / "products.jsonl"
    upload.write_text("\n".join(lines) + "\n", encoding="utf-8")

    page.goto("/ui/catalogue")
    expect(page.locator("#product-rows tr")).to_have_count(25)
    page.locator("#list-query").fill("catalogue upload")
    page.locator("#list-form button[type=submit]").click()
    expect(page.locator("#list-empty")).to_be_visible()
    page.locator("#cat-ingest-file").set_input_files(str(upload))
    with page.expect_response("**/v1/ingest") as accepted:
        page.locator("#cat-ingest-form button[type=submit]").click()
    job_id = accepted.value.json()["job_id"]
    expect(page.locator("#cat-ingest-status")).to_contain_text("Uploaded products.jsonl: job")
    view = page.locator("#cat-ingest-job")
    bar = view.locator("progress.job-progress")
    expect(bar).to_be_visible()
    expect(view.locator(".state")).to_have_text("completed_with_errors", timeout=60_000)
    expect(view.locator("dd.job-id")).to_have_text(job_id)
    expect(bar).to_have_attribute("max", "119")
    expect(bar).to_have_attribute("value", "119")  # the bar reached the end
    expect(view).to_contain_text("119 / 119 rows (100%)")
    expect(view).to_contain_text("116 ok, 0 unchanged, 3 failed")
    errors = view.locator("table.job-errors tbody tr")
    expect(errors).to_have_count(3)
    assert [errors.nth(i).locator("td").first.inner_text() for i in range(3)] == ["10", "41", "81"]
    expect(errors.nth(0).locator("td").nth(1)).to_have_text("title")
    expect(errors.nth(1)).to_contain_text("not valid JSON")
    expect(errors.nth(2).locator("td").nth(1)).to_have_text("price")
    # When the job ends the product list reloads with its filters: the new rows are there.
    expect(page.locator("#product-rows tr")).to_have_count(25)
    expect(page.locator("#product-rows tr").first.locator("td").first).to_have_text("cu-001")
    expect(page.locator("#list-empty")).to_be_hidden()
    assert live_server.http.get("/v1/products/cu-119").status_code == 200
    assert live_server.http.get("/v1/products/cu-bad-2").status_code == 404
    screenshot(page, screenshot_dir, "catalogue-upload")
