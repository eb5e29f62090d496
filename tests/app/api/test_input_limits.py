"""Issue 16's leftovers (docs/bad-inputs.md): limits that mean what the OpenAPI schema says,
single-valued query parameters given twice, the feedback import read by the strict CSV reader,
and one answer for every archive. Every test runs against the real app, on SQLite and on the
real PostgreSQL (the `db_url` fixture behind `client`)."""

from __future__ import annotations

import gzip
import io
import zipfile
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from app.api.params import no_repeated_query_params
from app.db.tables import Job, LabeledPair
from app.jobs.ingest_files import archive_message
from app.schemas.product import MAX_SHORT_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS
from app.schemas.retrain import RetrainRequest
from tests.helpers import product


def _count(client: TestClient, model: Any) -> int:
    with client.app.state.services.factory() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _locs(res: Any) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in res.json()["detail"]]


def _catalogue(client: TestClient, n: int = 2) -> None:
    for i in range(1, n + 1):
        body = product(i)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code == 201


# -- 1. a limit applies to the value as sent (the schema's maxLength), then it is stripped ---------


OVER = " "  # one space past the limit: the schema calls the value invalid, so must the server


@pytest.mark.parametrize(
    ("method", "url", "body", "loc"),
    [
        ("PUT", "/v1/products/p-1", {"title": "Acme", "image_urls": ["u" * MAX_URL_CHARS + OVER]}, ("image_urls", 0)),
        ("PUT", "/v1/products/p-1", {"title": "t" * MAX_TITLE_CHARS + OVER}, ("title",)),
        ("PUT", "/v1/products/p-1", {"title": "Acme", "brand": OVER + "b" * MAX_SHORT_CHARS}, ("brand",)),
        (
            "POST",
            "/v1/match/batch",
            {"items": [{"offer": {"title": "Acme", "category": "c" * MAX_SHORT_CHARS + OVER}}]},
            ("items", 0, "offer", "category"),
        ),
        (
            "POST",
            "/v1/match",
            {"offer": {"title": "Acme"}, "filters": {"category": "c" * MAX_SHORT_CHARS + OVER}},
            ("filters", "category"),
        ),
        ("POST", "/v1/recommend", {"query": {"text": "t" * MAX_TITLE_CHARS + OVER}}, ("query", "text")),
    ],
)
def test_a_padded_value_over_its_max_length_is_refused(client, method, url, body, loc):
    res = client.request(method, url, json=body)
    assert res.status_code == 422, res.text
    assert ("body", *loc) in _locs(res), res.text
    assert "at most" in res.text
    assert client.get("/v1/products/p-1").status_code == 404  # nothing stored


def test_values_at_their_limit_are_accepted_and_still_stripped(client):
    body = {"title": " Acme widget ", "brand": " Acme ", "image_urls": [" http://x/" + "u" * 2000 + " "]}
    res = client.put("/v1/products/p-1", json=body)
    assert res.status_code == 201, res.text
    stored = res.json()["product"]
    assert stored["title"] == "Acme widget" and stored["brand"] == "Acme"
    assert stored["image_urls"] == ["http://x/" + "u" * 2000]
    at_limit = client.put("/v1/products/p-2", json={"title": "t" * MAX_TITLE_CHARS, "brand": "b" * MAX_SHORT_CHARS})
    assert at_limit.status_code == 201, at_limit.text
    # A filter is stripped too, and a blank one is refused rather than ignored.
    filtered = client.post("/v1/match", json={"offer": {"title": "Acme widget"}, "filters": {"brand": " Acme "}})
    assert filtered.status_code == 200, filtered.text
    assert [c["external_id"] for c in filtered.json()["candidates"]] == ["p-1"]
    blank = client.post("/v1/match", json={"offer": {"title": "Acme widget"}, "filters": {"brand": "   "}})
    assert blank.status_code == 422 and ("body", "filters", "brand") in _locs(blank), blank.text
    assert "must not be blank" in blank.text


def test_the_schema_states_the_limits_the_server_applies(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    offer = schemas["OfferIn"]["properties"]
    assert offer["title"]["maxLength"] == MAX_TITLE_CHARS
    assert offer["image_urls"]["items"]["maxLength"] == MAX_URL_CHARS
    assert {"maxLength": MAX_SHORT_CHARS, "type": "string"} in offer["category"]["anyOf"]


# -- 2. a single-valued query parameter given twice -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/v1/products?brand=a&brand=b", "brand"),
        ("/v1/products?limit=1&limit=2", "limit"),
        ("/v1/feedback?product_external_id=a&product_external_id=b", "product_external_id"),
        ("/v1/review?limit=5&limit=5", "limit"),  # even the same value twice
        ("/v1/jobs/no-such-job?error_limit=1&error_limit=2", "error_limit"),
        ("/v1/admin/models?kind=matcher&kind=bi-encoder", "kind"),
    ],
)
def test_a_query_parameter_given_twice_is_refused_naming_it(client, admin_headers, url, name):
    res = client.get(url, headers=admin_headers)
    assert res.status_code == 422, res.text
    assert _locs(res) == [("query", name)]
    assert "given 2 times" in res.json()["detail"][0]["msg"]


def test_a_repeated_query_parameter_on_a_post_route_is_refused_before_anything_runs(client, admin_headers):
    res = client.post("/v1/admin/models/rollback?kind=matcher&kind=bi-encoder", headers=admin_headers)
    assert res.status_code == 422 and _locs(res) == [("query", "kind")], res.text
    assert _count(client, Job) == 0


def test_single_query_parameters_and_unknown_ones_still_pass(client):
    _catalogue(client)
    res = client.get("/v1/products?brand=Globex&limit=5")
    assert res.status_code == 200 and [p["external_id"] for p in res.json()["items"]] == ["p-00001"], res.text
    # A parameter no route declares is not read at all, repeated or not.
    assert client.get("/v1/products?colour=a&colour=b").status_code == 200


def test_a_list_query_parameter_may_repeat():
    app = FastAPI(dependencies=[Depends(no_repeated_query_params)])

    @app.get("/items")
    async def items(tag: Annotated[list[str] | None, Query()] = None, one: str | None = None) -> dict[str, Any]:
        return {"tag": tag, "one": one}

    with TestClient(app) as client:
        assert client.get("/items?tag=a&tag=b&one=x").json() == {"tag": ["a", "b"], "one": "x"}
        refused = client.get("/items?tag=a&one=x&one=y")
        assert refused.status_code == 422 and _locs(refused) == [("query", "one")]


# -- 3. /v1/feedback/import: the strict CSV reader, no row lost silently ---------------------------

HEADER = "offer_title,product_external_id,label,note\n"


def _labels(n: int) -> list[str]:
    return [f"Acme widget {i},p-0000{1 + i % 2},{'match' if i % 2 else 'no_match'},n{i}\n" for i in range(1, n + 1)]


def _import(client: TestClient, data: str | bytes, name: str = "labels.csv", mime: str = "text/csv") -> Any:
    raw = data.encode() if isinstance(data, str) else data
    return client.post("/v1/feedback/import", files={"file": (name, raw, mime)})


def test_a_stray_quote_that_swallows_rows_refuses_the_import_naming_the_line(client):
    _catalogue(client)
    rows = _labels(200)
    rows[2] = rows[2].replace("Acme", '"Acme')  # data row 3, line 4: the quote is never closed
    res = _import(client, HEADER + "".join(rows))
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert "data row 3" in detail and "line 4" in detail and "quote" in detail
    assert _count(client, LabeledPair) == 0


def test_a_quote_that_closes_rows_later_in_an_id_column_refuses_the_import(client):
    _catalogue(client)
    rows = _labels(6)
    # Row 3's product id opens a quote that row 4 closes: as one row it has the right width,
    # so only "an id never spans lines" tells it from a multi-line value (row 4 would be lost).
    rows[2] = 'Acme widget 3,"p-00001\n'
    rows[3] = 'p-00002",match,n4\n'
    res = _import(client, HEADER + "".join(rows))
    assert res.status_code == 422, res.text
    assert "'product_external_id' value holds a line break" in res.json()["detail"]
    assert _count(client, LabeledPair) == 0


def test_every_row_is_stored_or_reported_and_the_counts_add_up(client):
    _catalogue(client)
    rows = _labels(8)
    rows[1] = "Acme widget 2,p-00001\n"  # too few cells
    rows[4] = 'Acme widget 5,p-00001,match,"a "quoted" note"\n'  # a quoting fault on one line
    rows[6] = "Acme widget 7,p-00001,match,n7,extra\n"  # too many cells
    multi = '"Acme widget 9\nsecond line of the title",p-00002,match,n9\n'  # a title may span lines
    res = _import(client, HEADER + "".join(rows) + multi)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, None), (5, None), (7, None)]
    assert "expected 4 columns, found 2" in body["errors"][0]["message"]
    assert "CSV syntax error on line 6" in body["errors"][1]["message"]
    assert body["imported"] == 6 and body["failed"] == 3 and body["imported"] + body["failed"] == 9
    assert _count(client, LabeledPair) == 6


def test_a_row_over_the_csv_field_limit_is_reported_not_the_whole_file(client):
    _catalogue(client)
    big = "x" * 200_000  # over the csv module's field limit (131,072 characters)
    res = _import(client, f"{HEADER}Acme widget,p-00001,match,\n{big},p-00001,match,\nAcme,p-00002,match,\n")
    assert res.status_code == 200, res.text
    body = res.json()
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, None)]
    assert "field larger than field limit" in body["errors"][0]["message"]
    assert body["imported"] == 2 and _count(client, LabeledPair) == 2


def test_a_repeated_header_column_refuses_the_import(client):
    _catalogue(client)
    res = _import(client, "offer_title,product_external_id,label,label\nAcme,p-00001,match,no_match\n")
    assert res.status_code == 422 and "repeats column(s) ['label']" in res.json()["detail"], res.text
    assert _count(client, LabeledPair) == 0


# -- 4. archives: one answer, whichever check finds them ------------------------------------------


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("labels.csv", "external_id,title\np1,Acme widget\n")
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "payload", "mime"),
    [("zip", _zip(), "application/zip"), ("gzip", gzip.compress(b"external_id,title\np1,Acme\n"), "application/gzip")],
)
def test_every_archive_refusal_gives_the_same_answer(client, kind, payload, mime):
    suffix = {"zip": "zip", "gzip": "gz"}[kind]
    answers = set()
    for url in ("/v1/ingest", "/v1/match/jobs", "/v1/feedback/import"):
        for name, declared in (
            ("data.csv", mime),  # by its declared content type
            (f"data.csv.{suffix}", "application/octet-stream"),  # by its name
            ("data.csv", "text/csv"),  # by its leading bytes
        ):
            res = client.post(url, files={"file": (name, payload, declared)})
            assert res.status_code == 415, (url, name, declared, res.text)
            answers.add(res.json()["detail"])
    assert answers == {archive_message(kind)}
    assert "upload the CSV/JSONL file itself" in archive_message(kind)
    assert _count(client, Job) == 0 and _count(client, LabeledPair) == 0


# -- 5. retrain: the defaults are the best measured noise variant -----------------------------------


def test_retrain_defaults_are_the_best_measured_noise_variant():
    req = RetrainRequest.model_validate({"target": "matcher"})
    assert (req.noise, req.noise_action, req.noise_warmup) == ("bmm", "downweight", 3)
    assert req.noise_gate and req.noise_restart and req.noise_hard


def test_retrain_refuses_a_warm_up_that_leaves_detection_no_epoch(client, admin_headers):
    body = {"target": "matcher", "epochs": 3, "noise_restart": False}
    res = client.post("/v1/admin/retrain", json=body, headers=admin_headers)
    assert res.status_code == 422 and "noise_warmup (3) must be below epochs (3)" in res.text, res.text
    assert _count(client, Job) == 0
    with pytest.raises(ValidationError):
        RetrainRequest.model_validate(body)
    RetrainRequest.model_validate(body | {"noise_warmup": 2})  # fine: detection after epoch 2
    RetrainRequest.model_validate(body | {"noise": "none"})  # fine: no detection at all
