"""Upload faults that used to lose rows or name the wrong problem (issue 16), on SQLite and
PostgreSQL: a stray quote, UTF-16 files, zip archives, for ingestion and for bulk matching."""

from __future__ import annotations

import codecs

from tests.helpers import wait_job


def _catalogue(n: int = 200, stray_row: int | None = None, id_column: str = "external_id") -> bytes:
    lines = [f"{id_column},title,price"] + [f"p{i},Acme widget model {i},{i}.5" for i in range(1, n + 1)]
    if stray_row is not None:
        lines[stray_row] = lines[stray_row].replace("Acme", '"Acme')
    return ("\n".join(lines) + "\n").encode()


def test_a_stray_quote_refuses_the_upload_naming_the_line_and_stores_nothing(client):
    res = client.post("/v1/ingest", files={"file": ("cat.csv", _catalogue(stray_row=3))})
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert "data row 3" in detail and "line 4" in detail and "quote" in detail
    assert client.get("/v1/products", params={"limit": 5}).json()["items"] == []

    feed = client.post("/v1/match/jobs", files={"file": ("offers.csv", _catalogue(stray_row=3, id_column="offer_id"))})
    assert feed.status_code == 422 and "line 4" in feed.json()["detail"], feed.text

    # The same file without the stray quote: all 200 rows stored, counts add up.
    job = wait_job(client, client.post("/v1/ingest", files={"file": ("cat.csv", _catalogue())}).json()["job_id"])
    assert job["state"] == "completed", job
    assert job["progress"]["rows_total"] == 200 == job["rows_ok"] + job["rows_unchanged"] + job["rows_failed"]
    assert job["rows_ok"] == 200


def test_a_server_side_file_with_a_stray_quote_is_refused_too(client, settings):
    settings.ingest_allowed_dir.mkdir(parents=True, exist_ok=True)
    (settings.ingest_allowed_dir / "cat.csv").write_bytes(_catalogue(stray_row=150))
    res = client.post("/v1/ingest", data={"path": "cat.csv"})
    assert res.status_code == 422 and "data row 150" in res.json()["detail"], res.text


def test_utf16_uploads_say_convert_to_utf8(client):
    text = "external_id,title\np1,Caf\u00e9 cr\u00e8me grinder\n"
    for data in (codecs.BOM_UTF16_LE + text.encode("utf-16-le"), codecs.BOM_UTF16_BE + text.encode("utf-16-be")):
        for url, name in (("/v1/ingest", "cat.csv"), ("/v1/match/jobs", "offers.csv")):
            res = client.post(url, files={"file": (name, data)})
            assert res.status_code == 422, res.text
            assert "UTF-16: convert it to UTF-8" in res.json()["detail"]


def test_zip_uploads_say_upload_the_file_itself(client):
    payload = b"PK\x03\x04" + bytes(60)
    for url in ("/v1/ingest", "/v1/match/jobs"):
        # As curl -F file=@catalogue.zip sends it (no archive content type): named by its suffix.
        named = client.post(url, files={"file": ("catalogue.zip", payload, "application/octet-stream")})
        assert named.status_code == 415, named.text
        assert "zip archives are not accepted: upload the CSV/JSONL file itself" in named.json()["detail"]
        # Named like a CSV: found by its leading bytes; the same answer.
        disguised = client.post(url, files={"file": ("catalogue.csv", payload, "text/csv")})
        assert disguised.status_code == 415, disguised.text
        assert disguised.json()["detail"] == named.json()["detail"]
