from __future__ import annotations

import csv
import io
import json

from tests.helpers import product, wait_job

GOOD = [product(n) for n in range(1, 11)]


def _csv(rows: list[dict], header: list[str] | None = None) -> bytes:
    header = header or ["external_id", "title", "brand", "category", "price", "currency"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue().encode()


def _upload(client, name: str, data: bytes, **form):
    return client.post("/v1/ingest", files={"file": (name, data)}, data=form)


def test_csv_with_three_bad_rows_reports_them_and_keeps_the_rest(client):
    rows = [dict(r) for r in GOOD]
    rows[2]["external_id"] = ""  # data row 3: missing id
    rows[4]["title"] = "   "  # data row 5: blank title
    rows[8]["price"] = "abc"  # data row 9: not a number
    res = _upload(client, "feed.csv", _csv(rows))
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["state"] == "completed_with_errors", job
    assert job["progress"] == {"rows_done": 10, "rows_total": 10, "fraction": 1.0}
    assert job["rows_ok"] == 7 and job["rows_failed"] == 3
    assert sorted({e["row"] for e in job["errors"]}) == [3, 5, 9]
    fields = {e["row"]: e["field"] for e in job["errors"]}
    assert fields[3] == "external_id" and fields[5] == "title" and fields[9] == "price"
    assert job["timings"]["total_s"] >= 0
    for n in (1, 2, 4, 6, 7, 8, 10):
        assert client.get(f"/v1/products/p-{n:05d}").status_code == 200
    match = client.post("/v1/match", json={"offer": {"title": GOOD[0]["title"]}, "top_k": 5}).json()
    assert match["candidates"][0]["external_id"] == "p-00001"

    # The same file again changes nothing: no duplicates, nothing re-embedded.
    again = wait_job(client, _upload(client, "feed.csv", _csv(rows)).json()["job_id"])
    assert again["rows_ok"] == 0 and again["rows_unchanged"] == 7 and again["rows_failed"] == 3
    listed = client.get("/v1/products", params={"limit": 100}).json()["items"]
    assert len(listed) == 7


def test_jsonl_with_a_broken_line(client):
    lines = [json.dumps(r) for r in GOOD[:4]]
    lines.insert(2, "{this is not json")
    lines.append(json.dumps(["a", "list"]))
    lines.append("")
    res = _upload(client, "feed.jsonl", "\n".join(lines).encode())
    job = wait_job(client, res.json()["job_id"])
    assert job["state"] == "completed_with_errors"
    assert job["rows_ok"] == 4
    msgs = {e["row"]: e["message"] for e in job["errors"]}
    assert "not valid JSON" in msgs[3]
    assert "JSON object" in msgs[6]


def test_duplicate_ids_inside_one_file_are_row_errors(client):
    rows = [GOOD[0], GOOD[1], dict(GOOD[0], title="Other title for the same id")]
    job = wait_job(client, _upload(client, "dupes.csv", _csv(rows)).json()["job_id"])
    assert job["rows_ok"] == 2 and job["rows_failed"] == 1
    assert job["errors"][0]["row"] == 3 and "duplicate" in job["errors"][0]["message"]
    assert client.get("/v1/products/p-00001").json()["title"] == GOOD[0]["title"]


def test_unknown_csv_columns_become_attributes(client):
    data = _csv([dict(GOOD[0], colour="red")], ["external_id", "title", "colour"])
    wait_job(client, _upload(client, "extra.csv", data).json()["job_id"])
    assert client.get("/v1/products/p-00001").json()["attributes"] == {"colour": "red"}


def test_broken_quote_is_a_row_error(client):
    data = b'external_id,title\na,"Good title"\nb,"broken "quote" here\nc,Third\n'
    job = wait_job(client, _upload(client, "quote.csv", data).json()["job_id"])
    assert job["rows_ok"] >= 1
    assert job["rows_failed"] >= 1
    assert client.get("/v1/products/a").status_code == 200


def test_unreadable_files_are_refused_at_upload(client):
    cases = [
        ("empty.csv", b"", 422, "empty"),
        ("latin1.csv", "external_id,title\n1,Caf\u00e9\n".encode("latin-1"), 422, "UTF-8"),
        ("binary.csv", b"\x00\x01\x02PK\x03\x04" * 100, 415, "binary"),
        ("noheader.csv", b"id,name\n1,x\n", 422, "external_id"),
        ("feed.xlsx", b"whatever", 422, "format"),
    ]
    for name, data, code, word in cases:
        res = _upload(client, name, data)
        assert res.status_code == code, (name, res.text)
        assert word in res.json()["detail"], (name, res.text)


def test_upload_needs_exactly_one_source(client):
    assert client.post("/v1/ingest", data={"format": "csv"}).status_code == 422


def test_server_side_path_is_confined(client, settings):
    allowed = settings.ingest_allowed_dir
    allowed.mkdir(parents=True, exist_ok=True)
    (allowed / "feed.csv").write_bytes(_csv(GOOD[:2]))
    ok = client.post("/v1/ingest", data={"path": "feed.csv"})
    assert ok.status_code == 202, ok.text
    assert wait_job(client, ok.json()["job_id"])["rows_ok"] == 2
    for bad in ("../secret.csv", "/etc/passwd", "sub/../../x.csv"):
        res = client.post("/v1/ingest", data={"path": bad})
        assert res.status_code == 403, (bad, res.text)
        assert "/etc" not in res.json()["detail"] or bad == "/etc/passwd"


def test_blank_titles_are_never_indexed(client):
    rows = [dict(external_id=f"blank-{i}", title=t) for i, t in enumerate(["", " ", "...", "-- !!"] * 50)]
    rows.append(GOOD[0])
    job = wait_job(client, _upload(client, "blank.csv", _csv(rows, ["external_id", "title"])).json()["job_id"])
    assert job["rows_ok"] == 1 and job["rows_failed"] == 200
    assert job["error_count"] == 200
    stats = client.get("/readyz").json()["index"]
    assert stats["size"] == 1


def test_unknown_job_is_404(client):
    assert client.get("/v1/jobs/nope").status_code == 404
