"""Issue 16, part A: the bad inputs found by probing the running service, each answered with a 4xx
that names the problem (docs/bad-inputs.md lists them with their answers). Every test runs on
SQLite and on the real PostgreSQL (the `db_url` fixture), against the real app."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.docs import ASSET_FILES, ASSETS_URL
from app.api.feedback import MAX_IMPORT_ROWS
from app.api.uploads import confined
from app.db import jobs
from app.db.tables import Job, LabeledPair, Product, ReviewItem
from app.main import create_app
from tests.conftest import make_settings
from tests.helpers import product, wait_job

JSON = {"content-type": "application/json"}


@contextmanager
def app_client(tmp_path: Path, db_url: str, encoder, **overrides: object) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(tmp_path / "var", db_url, **overrides), encoder=encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    assert app.state.unhandled_errors == 0, "a request reached the catch-all 500 handler"


def _catalogue(client: TestClient, n: int = 6) -> None:
    for i in range(1, n + 1):
        body = product(i)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code == 201


def _count(client: TestClient, model, *where) -> int:  # type: ignore[no-untyped-def]
    with client.app.state.services.factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _detail(res) -> list[tuple[tuple, str]]:  # type: ignore[no-untyped-def]
    return [(tuple(e["loc"]), e["msg"]) for e in res.json()["detail"]]


# -- 1. engine=ray without a cluster -------------------------------------------------------------


def test_ray_engine_without_a_cluster_is_refused_and_starts_nothing(client, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    res = client.post(
        "/v1/match/jobs", files={"file": ("f.csv", b"offer_id,title\n1,Acme widget\n")}, data={"engine": "ray"}
    )
    assert res.status_code == 422, res.text
    assert "no Ray cluster configured" in res.json()["detail"] and "RAY_ADDRESS" in res.json()["detail"]
    assert _count(client, Job) == 0
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dev dependency
        return
    assert not ray.is_initialized(), "the API process started a Ray runtime"


# -- 2. strict types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"offer": {"title": "Acme widget"}, "top_k": True}, ("body", "top_k")),
        ({"offer": {"title": "Acme widget"}, "top_k": "3"}, ("body", "top_k")),
        ({"offer": {"title": "Acme widget"}, "top_k": 3.0}, ("body", "top_k")),
        ({"offer": {"title": "Acme widget"}, "explain": "yes"}, ("body", "explain")),
        ({"offer": {"title": "Acme widget"}, "explain": 1}, ("body", "explain")),
        ({"offer": {"title": "Acme widget", "price": True}}, ("body", "offer", "price")),
        ({"offer": {"title": "Acme widget", "price": "12.5"}}, ("body", "offer", "price")),
        ({"offer": {"title": 12345}}, ("body", "offer", "title")),
    ],
)
def test_wrong_types_in_a_match_request_are_refused(client, body, loc):
    res = client.post("/v1/match", json=body)
    assert res.status_code == 422, res.text
    assert loc in [tuple(e["loc"]) for e in res.json()["detail"]], res.text


@pytest.mark.parametrize("price", [True, False, "12.5", "abc", [1]])
def test_wrong_price_types_are_refused_and_nothing_is_stored(client, price):
    res = client.put("/v1/products/typed-1", json={"title": "Acme widget", "price": price})
    assert res.status_code == 422, res.text
    assert ("body", "price") in [tuple(e["loc"]) for e in res.json()["detail"]]
    assert client.get("/v1/products/typed-1").status_code == 404


def test_right_types_are_still_accepted(client):
    # An integer is a valid float; true/false are the booleans.
    res = client.put("/v1/products/typed-2", json={"title": "Acme widget", "price": 12})
    assert res.status_code == 201 and res.json()["product"]["price"] == 12.0
    res = client.post("/v1/match", json={"offer": {"title": "Acme widget", "price": 12.5}, "top_k": 3, "explain": True})
    assert res.status_code == 200, res.text


def test_retrain_and_feedback_bodies_are_strict_too(client, admin_headers):
    res = client.post("/v1/admin/retrain", headers=admin_headers, json={"target": "matcher", "epochs": "3"})
    assert res.status_code == 422 and ("body", "epochs") in [tuple(e["loc"]) for e in res.json()["detail"]]
    res = client.post("/v1/admin/retrain", headers=admin_headers, json={"target": "matcher", "pseudo_labels": "yes"})
    assert res.status_code == 422 and ("body", "pseudo_labels") in [tuple(e["loc"]) for e in res.json()["detail"]]
    res = client.post(
        "/v1/feedback", json={"offer": {"title": "x", "price": "1"}, "product_external_id": "p", "label": "match"}
    )
    assert res.status_code == 422 and ("body", "offer", "price") in [tuple(e["loc"]) for e in res.json()["detail"]]


# -- 3. NUL characters -------------------------------------------------------------------------


def test_nul_in_a_product_id_or_any_text_field_is_refused(client):
    res = client.put("/v1/products/nul%00id", json={"title": "Acme widget"})
    assert res.status_code == 422 and _detail(res) == [
        (("path", "external_id"), "must not contain NUL characters (\\u0000)")
    ]
    for field, value in [
        ("title", "Acme\u0000widget"),
        ("brand", "Ac\u0000me"),
        ("description", "\u0000"),
        ("image_urls", ["https://example.org/a.png", "b\u0000"]),
        ("attributes", {"colour": {"name": "r\u0000ed"}}),
        ("attributes", {"k\u0000": "v"}),
    ]:
        res = client.put("/v1/products/nul-2", json={"title": "Acme widget", field: value})
        assert res.status_code == 422, (field, res.text)
        [(loc, msg)] = _detail(res)
        assert loc == ("body", field) and "NUL" in msg, (field, res.text)
    assert _count(client, Product) == 0
    for path in (
        "/v1/products/a%00",
        "/v1/products?query=%00",
        "/v1/products?brand=x%00",
        "/v1/feedback?product_external_id=%00",
    ):
        res = client.get(path)
        assert res.status_code == 422, (path, res.text)
        assert "NUL" in res.json()["detail"][0]["msg"], path
    res = client.post("/v1/match", json={"offer": {"title": "x"}, "filters": {"brand": "\u0000"}})
    assert res.status_code == 422 and _detail(res)[0][0] == ("body", "filters", "brand")


# -- 4. feedback import: errors under their own column ---------------------------------------------


def test_feedback_import_reports_each_error_under_its_column(client):
    _catalogue(client, 2)
    long_title = "acme widget " * 160  # ~1,900 characters: five such rows pass the 8 kB binary sniff
    data = (
        "offer_title,product_external_id,label,offer_price,reviewer,offer_external_id\n"
        "Acme widget,p-00001,match,abc,ann,\n"  # 1: bad price
        "Acme widget,no-such-product,match,,ann,\n"  # 2: unknown product
        "Acme widget,p-00001,maybe,,ann,\n"  # 3: bad label
        ",p-00001,match,,ann,\n"  # 4: no title
        f"Acme widget,p-00001,match,,ann,{'o' * 300}\n"  # 5: offer id too long
        + "".join(f"{long_title},p-00002,match,12.5,ann,o-{n}\n" for n in range(6, 11))  # 6-10: good
        + "Acme widget,p-00002,no_match,12.5,b\u0000b,\n"  # 11: NUL in the reviewer
    ).encode()
    assert data.index(b"\x00") > 8192
    res = client.post("/v1/feedback/import", files={"file": ("labels.csv", data)})
    assert res.status_code == 200, res.text
    body = res.json()
    fields = [(e["row"], e["field"]) for e in body["errors"]]
    assert fields == [
        (1, "offer_price"),
        (2, "product_external_id"),
        (3, "label"),
        (4, "offer_title"),
        (5, "offer_external_id"),
        (11, "reviewer"),
    ]
    assert body["imported"] == 5 and body["failed"] == 6
    assert _count(client, LabeledPair) == 5


# -- 5. feedback for an unknown product -------------------------------------------------------------


def test_feedback_for_an_unknown_product_is_404(client):
    res = client.post(
        "/v1/feedback", json={"offer": {"title": "x"}, "product_external_id": "no-such-product", "label": "match"}
    )
    assert res.status_code == 404 and "no-such-product" in res.json()["detail"], res.text
    assert _count(client, LabeledPair) == 0
    _catalogue(client, 1)
    res = client.post(
        "/v1/feedback", json={"offer": {"title": "x"}, "product_external_id": "p-00001", "label": "match"}
    )
    assert res.status_code == 201, res.text


# -- 6. the review queue: one open item per (offer, candidate set) -----------------------------------


@pytest.fixture
def review_client(tmp_path, db_url, tiny_encoder) -> Iterator[TestClient]:
    # Every score of the tiny encoder falls in [0, 1): with these thresholds every decision is review.
    with app_client(
        tmp_path, db_url, tiny_encoder, match_threshold=1.0, review_threshold=0.0, match_feed_chunk_rows=2
    ) as client:
        _catalogue(client)
        yield client


def _open_reviews(client: TestClient) -> list[dict]:
    return client.get("/v1/review", params={"limit": 500}).json()["items"]


def test_the_same_batch_twice_queues_each_review_once(review_client):
    items = [{"offer": {"title": f"acme gadget {n}"}, "top_k": 3} for n in range(3)]
    first = review_client.post("/v1/match/batch", json={"items": items + items[:1]})  # a repeat inside the batch too
    assert first.status_code == 200 and {r["decision"] for r in first.json()["results"]} == {"review"}
    assert len(_open_reviews(review_client)) == 3
    again = review_client.post("/v1/match/batch", json={"items": items})
    assert again.status_code == 200
    assert len(_open_reviews(review_client)) == 3
    # Concurrent identical requests: the database's unique index keeps one open item.
    offer = {"offer": {"title": "acme gadget raced"}, "top_k": 3}
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: review_client.post("/v1/match", json=offer).status_code, range(6)))
    assert codes == [200] * 6
    assert len(_open_reviews(review_client)) == 4
    # Another candidate set for the same offer is another question.
    review_client.post("/v1/match", json={"offer": {"title": "acme gadget 0"}, "top_k": 2})
    assert len(_open_reviews(review_client)) == 5
    # A labelled item frees its key: the same decision later is a new open item.
    item = next(i for i in _open_reviews(review_client) if i["offer"]["title"] == "acme gadget 1")
    label = {"review_id": item["id"], "product_external_id": item["candidates"][0]["external_id"], "label": "match"}
    assert review_client.post("/v1/feedback", json=label).status_code == 201
    assert len(_open_reviews(review_client)) == 4
    review_client.post("/v1/match", json=items[1])
    assert len(_open_reviews(review_client)) == 5


def _feed() -> bytes:
    lines = ["offer_id,title,brand"] + [f"o-{n},acme gadget feed {n},Acme" for n in range(5)] + [",no id,Acme"]
    return ("\n".join(lines) + "\n").encode()


def test_bulk_jobs_feed_the_review_queue_only_when_asked(review_client):
    quiet = review_client.post("/v1/match/jobs", files={"file": ("offers.csv", _feed())}, data={"top_k": "3"})
    assert quiet.status_code == 202, quiet.text
    assert wait_job(review_client, quiet.json()["job_id"])["state"] == "completed_with_errors"
    assert _open_reviews(review_client) == []  # default: review=false, the result file has the decisions

    for attempt in range(2):  # the same feed twice: no duplicates
        res = review_client.post(
            "/v1/match/jobs", files={"file": ("offers.csv", _feed())}, data={"top_k": "3", "review": "true"}
        )
        assert res.status_code == 202, res.text
        job = wait_job(review_client, res.json()["job_id"])
        assert job["state"] == "completed_with_errors" and job["timings"]["decisions"] == {"review": 5}, job
        queued = _open_reviews(review_client)
        assert sorted(i["offer_external_id"] for i in queued) == [f"o-{n}" for n in range(5)], attempt
    item = next(i for i in queued if i["offer_external_id"] == "o-3")
    assert item["offer"]["title"] == "acme gadget feed 3" and item["offer"]["brand"] == "Acme"
    assert len(item["candidates"]) == 3 and all(c["title"] for c in item["candidates"])
    assert item["model_versions"]
    bad = review_client.post("/v1/match/jobs", files={"file": ("offers.csv", _feed())}, data={"review": "maybe"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "review"]


# -- 7. rollback with nothing to roll back -------------------------------------------------------


def test_rollback_with_nothing_active_is_409(client, admin_headers):
    for kind in ("bi-encoder", "matcher"):
        res = client.post("/v1/admin/models/rollback", headers=admin_headers, params={"kind": kind})
        assert res.status_code == 409, res.text
        assert "nothing to roll back" in res.json()["detail"] and kind in res.json()["detail"]
    assert _count(client, Job) == 0


def test_a_rollback_job_with_nothing_active_fails_with_the_reason(client):
    services = client.app.state.services
    job, _ = jobs.create_job(services.factory, "rollback", {"kind": "matcher"})  # as the CLI queues it
    services.queue.push(job.id)
    done = wait_job(client, job.id)
    assert done["state"] == "failed" and "nothing to roll back" in done["message"], done


# -- 8. bodies that are not UTF-8 or nested too deeply --------------------------------------------


def _nested(depth: int) -> bytes:
    # {"offer": {"title": .., "attributes": {"a": [[...]]}}}: 3 objects, then depth - 3 arrays
    inner = "[" * (depth - 3) + "]" * (depth - 3)
    return ('{"offer": {"title": "Acme widget", "attributes": {"a": ' + inner + "}}}").encode()


def test_bodies_that_are_not_utf8_or_too_deep_are_named(client, settings):
    res = client.post("/v1/match", content=b'{"offer": {"title": "caf\xe9"}}', headers=JSON)
    assert res.status_code == 422 and "body is not valid UTF-8 (byte offset 24)" in res.text, res.text
    res = client.post("/v1/match", content=b"[" * 5000 + b"]" * 5000, headers=JSON)
    assert res.status_code == 422, res.text
    assert f"JSON nested deeper than {settings.max_json_depth} levels" in res.json()["detail"][0]["msg"]
    over = client.post("/v1/match", content=_nested(settings.max_json_depth + 1), headers=JSON)
    assert over.status_code == 422 and "nested deeper" in over.text
    at_limit = client.post("/v1/match", content=_nested(settings.max_json_depth), headers=JSON)
    assert at_limit.status_code == 200, at_limit.text
    # Brackets inside strings are text, not nesting.
    title = "[" * 500 + " widget"
    assert client.post("/v1/match", json={"offer": {"title": title}}).status_code == 200
    # Malformed JSON says what the parser found, and where.
    res = client.post("/v1/match", content=b'{"offer": ', headers=JSON)
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", 10]
    assert res.json()["detail"][0]["msg"] == "JSON decode error: Expecting value"


# -- 9. admin routes: the token before the body ---------------------------------------------------


def test_admin_routes_check_the_token_before_the_body(client, admin_headers):
    posts = [
        "/v1/admin/retrain",
        "/v1/admin/index/repair",
        "/v1/admin/index/rebuild",
        "/v1/admin/models/rollback",
        "/v1/admin/models/v1/promote",
        "/v1/admin/models/v1/rollback",
    ]
    for path in posts:
        for body in (b"{not json", b'{"target": "matcher", "epochs": "x"}', b"\xff\xfe", b"[" * 5000):
            res = client.post(path, content=body, headers=JSON)
            assert res.status_code == 401, (path, body[:10], res.text)
            assert (
                res.json() == {"detail": "admin bearer token required"} and res.headers["www-authenticate"] == "Bearer"
            )
            res = client.post(path, content=body, headers={**JSON, "Authorization": "Bearer wrong-token"})
            assert res.status_code == 403, (path, res.text)
    # With the token, the body is judged.
    res = client.post("/v1/admin/retrain", content=b"{not json", headers={**JSON, **admin_headers})
    assert res.status_code == 422 and res.json()["detail"][0]["type"] == "json_invalid"


# -- 10. forms: unknown, blank and NUL fields --------------------------------------------------------


FEED = b"offer_id,title\n1,Acme widget\n"
CATALOGUE_CSV = b"external_id,title\np-1,Acme widget\n"
LABELS_CSV = b"offer_title,product_external_id,label\n"


@pytest.mark.parametrize(
    ("path", "files", "data", "field", "says"),
    [
        ("/v1/match/jobs", {"file": ("f.csv", FEED)}, {"colour": "red"}, "colour", "unknown form field"),
        ("/v1/match/jobs", {"file": ("f.csv", FEED)}, {"brand": "\x00"}, "brand", "NUL"),
        ("/v1/match/jobs", {"file": ("f.csv", FEED)}, {"brand": ""}, "brand", "blank"),
        ("/v1/match/jobs", {"file": ("f.csv", FEED)}, {"category": "   "}, "category", "blank"),
        ("/v1/match/jobs", {"file": ("f.csv", FEED)}, {"top_k": ""}, "top_k", "blank"),
        ("/v1/match/jobs", {"file": ("f.csv", FEED)}, {"brand": ["Acme", "Globex"]}, "brand", "more than once"),
        ("/v1/ingest", {"file": ("c.csv", CATALOGUE_CSV)}, {"colour": "red"}, "colour", "unknown form field"),
        ("/v1/ingest", {"file": ("c.csv", CATALOGUE_CSV)}, {"format": ""}, "format", "blank"),
        ("/v1/ingest", None, {"path": "a\x00.csv"}, "path", "NUL"),
        (
            "/v1/feedback/import",
            {"file": ("l.csv", b"offer_title,product_external_id,label\n")},
            {"x": "1"},
            "x",
            "unknown",
        ),
    ],
)
def test_bad_form_fields_are_named(client, path, files, data, field, says):
    res = client.post(path, files=files, data=data)
    assert res.status_code == 422, res.text
    errors = res.json()["detail"]
    assert any(e["loc"] == ["body", field] and says in e["msg"] for e in errors), errors
    assert _count(client, Job) == 0
    upload_dir = Path(client.app.state.services.settings.upload_dir)
    assert not upload_dir.exists() or not any(upload_dir.iterdir())


def test_good_forms_still_pass(client):
    res = client.post("/v1/ingest", files={"file": ("c.csv", CATALOGUE_CSV)}, data={"format": "csv"})
    assert res.status_code == 202, res.text
    assert wait_job(client, res.json()["job_id"])["state"] == "completed"
    res = client.post("/v1/match/jobs", files={"file": ("f.csv", FEED)}, data={"brand": "Acme", "top_k": "2"})
    assert res.status_code == 202, res.text


def test_form_schemas_take_no_other_fields(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    forms = {name: s for name, s in schemas.items() if name.startswith("Body_")}
    assert len(forms) == 3 and all(s["additionalProperties"] is False for s in forms.values()), forms


# -- 11. /docs and /redoc without any outside request -------------------------------------------


_URL_ATTR = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: '([^']+)'""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_site(client, page):
    res = client.get(page)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    html = res.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html, html
    urls = [a or b for a, b in _URL_ATTR.findall(html)]
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        got = client.get(url)
        assert got.status_code == 200 and got.content, url
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no badge fetched from the online validator
        assert {f"{ASSETS_URL}/swagger-ui-bundle.js", f"{ASSETS_URL}/swagger-ui.css", "/openapi.json"} <= set(urls)
    else:
        assert {f"{ASSETS_URL}/redoc.standalone.js", "/openapi.json"} <= set(urls)
        assert "fonts.googleapis" not in html


def test_docs_assets_are_served(client):
    sizes = {name: len(client.get(f"{ASSETS_URL}/{name}").content) for name in ASSET_FILES}
    assert all(size > 1000 for size in sizes.values()), sizes


# -- 13. INGEST_ALLOWED_DIR and the feedback import's size --------------------------------------------


def test_the_ingest_folder_exists_and_a_missing_file_says_where_to_put_it(client, settings):
    assert Path(settings.ingest_allowed_dir).is_dir()  # created at start-up
    res = client.post("/v1/match/jobs", data={"path": "feeds/offers.jsonl"})
    assert res.status_code == 404 and "INGEST_ALLOWED_DIR" in res.json()["detail"], res.text
    assert str(settings.ingest_allowed_dir) not in res.json()["detail"]  # an absolute folder is not shown
    base = Path(settings.ingest_allowed_dir)
    with pytest.raises(HTTPException) as missing:
        confined(base, "feeds/offers.jsonl", "var/import")
    assert missing.value.status_code == 404 and "INGEST_ALLOWED_DIR (var/import)" in missing.value.detail
    (base / "feeds").mkdir()
    (base / "feeds" / "offers.jsonl").write_text('{"offer_id": "1", "title": "Acme widget"}\n')
    res = client.post("/v1/match/jobs", data={"path": "feeds/offers.jsonl"})
    assert res.status_code == 202, res.text


def test_feedback_import_has_its_own_size_cap(tmp_path, db_url, tiny_encoder):
    default = make_settings(tmp_path / "d", db_url)
    assert default.feedback_import_max_bytes >= MAX_IMPORT_ROWS * 200 > default.max_body_bytes
    with app_client(tmp_path, db_url, tiny_encoder, max_body_bytes=10_000, feedback_import_max_bytes=60_000) as client:
        _catalogue(client, 1)
        header = "offer_title,product_external_id,label\n"
        rows = "".join(f"acme widget number {n},p-00001,match\n" for n in range(1000))  # ~33 kB
        res = client.post("/v1/feedback/import", files={"file": ("l.csv", (header + rows).encode())})
        assert res.status_code == 200 and res.json()["imported"] == 1000, res.text[:300]
        res = client.post("/v1/feedback/import", files={"file": ("l.csv", (header + rows * 2).encode())})
        assert res.status_code == 413 and "60000 bytes" in res.text
        assert client.post("/v1/match", content=b" " * 10_001, headers=JSON).status_code == 413  # others keep theirs


# -- 14. created_at and updated_at of a new product ------------------------------------------------


def test_a_new_product_is_not_created_after_its_update(client):
    body = client.put("/v1/products/t-1", json={"title": "Acme widget"}).json()["product"]
    created, updated = (datetime.fromisoformat(body[k]) for k in ("created_at", "updated_at"))
    assert created == updated
    ingest = client.post("/v1/ingest", files={"file": ("c.jsonl", json.dumps(product(9)).encode())})
    assert wait_job(client, ingest.json()["job_id"])["state"] == "completed"
    got = client.get("/v1/products/p-00009").json()
    assert datetime.fromisoformat(got["created_at"]) <= datetime.fromisoformat(got["updated_at"])
    changed = client.put("/v1/products/t-1", json={"title": "Acme widget v2"}).json()["product"]
    assert datetime.fromisoformat(changed["created_at"]) == created
    assert datetime.fromisoformat(changed["updated_at"]) > created
    with client.app.state.services.factory() as session:
        later = session.scalar(select(func.count()).select_from(Product).where(Product.created_at > Product.updated_at))
    assert later == 0


def test_review_items_have_no_key_collisions_across_statuses(review_client):
    """Unit check on the stored rows: every open item has a key, and keys are unique among them."""
    review_client.post("/v1/match", json={"offer": {"title": "acme gadget k"}, "top_k": 3})
    with review_client.app.state.services.factory() as session:
        keys = list(session.scalars(select(ReviewItem.dedupe_key).where(ReviewItem.status == "open")))
    assert keys and all(keys) and len(keys) == len(set(keys))


# A CSV syntax error in a feedback import: tests/app/api/test_input_limits.py (the strict reader
# reports a row it cannot read and refuses a file whose quoting swallows rows).


def test_a_boolean_price_in_a_json_lines_catalogue_is_a_row_error(client):
    rows = [product(1, price=True), product(2, price="12.5"), product(3)]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    job = wait_job(client, client.post("/v1/ingest", files={"file": ("c.jsonl", data)}).json()["job_id"])
    assert job["state"] == "completed_with_errors" and job["rows_ok"] == 2, job
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(1, "price")]
    assert "not a boolean" in job["errors"][0]["message"]
    assert client.get("/v1/products/p-00002").json()["price"] == 12.5  # text from a file stays a price
