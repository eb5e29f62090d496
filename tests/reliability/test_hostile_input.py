"""Hostile uploads and bodies: compression bombs, a single 50 MB line, binary garbage, wrong
content types, oversize uploads. Each is refused with a 4xx naming the rule (or, for a readable
file with a monstrous row, ingested row by row with that row reported), nothing is decompressed,
no job or file is left behind by a refused upload, and no request reaches the 500 handler."""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.helpers import product, wait_job

BOMB_BYTES = 200 * 1024 * 1024  # expands to 200 MB, twice the upload limit; a few hundred KB on the wire


def _gzip_bomb() -> bytes:
    buf = io.BytesIO()
    zeros = b"0" * (1 << 20)
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        for _ in range(BOMB_BYTES >> 20):
            gz.write(zeros)
    return buf.getvalue()


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("feed.csv", "w", force_zip64=True) as member:
            member.write(b"external_id,title\n")
            zeros = b"0" * (1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                member.write(zeros)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"gzip": _gzip_bomb(), "zip": _zip_bomb()}


def _upload(client, name: str, data: bytes, content_type: str = "text/csv"):  # type: ignore[no-untyped-def]
    return client.post("/v1/ingest", files={"file": (name, data, content_type)})


def _nothing_stored(client, settings) -> None:  # type: ignore[no-untyped-def]
    uploads = Path(settings.upload_dir)
    assert not uploads.exists() or not any(uploads.iterdir()), list(uploads.iterdir())
    from sqlalchemy import func, select

    from app.db.tables import Job

    with client.app.state.services.factory() as s:
        assert s.scalar(select(func.count(Job.id))) == 0


def test_compression_bombs_are_refused_by_type_and_never_expanded(client, settings, bombs):
    assert all(len(b) < 2_000_000 for b in bombs.values())
    for kind, data in bombs.items():
        # Named and typed as CSV: the content is sniffed (archive magic bytes) -> 415.
        res = _upload(client, "feed.csv", data)
        assert res.status_code == 415, (kind, res.text)
        sniffed = res.json()["detail"]
        assert kind in sniffed and "uncompressed" in sniffed
        # Declared as an archive: refused before a byte is stored -> 415, the same answer.
        mime = {"gzip": "application/gzip", "zip": "application/zip"}[kind]
        res = _upload(client, "feed.jsonl", data, mime)
        assert res.status_code == 415, (kind, res.text)
        assert res.json()["detail"] == sniffed
        # Named as an archive -> 415, the same answer.
        res = _upload(client, f"feed.csv.{'gz' if kind == 'gzip' else 'zip'}", data, "application/octet-stream")
        assert res.status_code == 415, (kind, res.text)
        assert res.json()["detail"] == sniffed
    _nothing_stored(client, settings)


def test_gzip_content_encoding_is_not_inflated(client, bombs):
    """A request body sent with Content-Encoding: gzip is taken as the raw bytes it is."""
    res = client.post(
        "/v1/match",
        content=bombs["gzip"],
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    # Small on the wire, so under the body limit; never inflated, so simply not JSON (400/422).
    assert res.status_code in (400, 422), res.text
    assert "pars" in res.text or "JSON" in res.text


def test_binary_garbage_is_refused(client, settings):
    rng = random.Random(3)
    garbage = rng.randbytes(1 << 20)
    for name in ("feed.csv", "feed.jsonl"):
        res = _upload(client, name, garbage, "application/octet-stream")
        assert res.status_code == 415, (name, res.text)
        assert "binary" in res.json()["detail"]
    no_nul = bytes(b or 1 for b in garbage)  # invalid UTF-8 without NUL bytes
    res = _upload(client, "feed.jsonl", no_nul)
    assert res.status_code == 422 and "UTF-8" in res.json()["detail"], res.text
    _nothing_stored(client, settings)


def test_single_50mb_line_is_a_row_error_and_the_rest_is_ingested(client):
    huge = b'{"external_id": "huge", "title": "' + b"a" * (50 * 1024 * 1024) + b'"}\n'
    good = [json.dumps(product(n)).encode() + b"\n" for n in (1, 2)]
    res = _upload(client, "feed.jsonl", good[0] + huge + good[1], "application/x-ndjson")
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"], timeout=120)
    assert job["state"] == "completed_with_errors", job
    assert job["rows_ok"] == 2 and job["rows_failed"] == 1
    assert job["errors"][0]["row"] == 2 and "longer than" in job["errors"][0]["message"]
    assert client.get("/v1/products/huge").status_code == 404
    assert client.get(f"/v1/products/{product(2)['external_id']}").status_code == 200


def test_single_50mb_csv_field_is_a_row_error(client):
    data = b"external_id,title\nok-1,Good first title\nbig," + b"b" * (50 * 1024 * 1024) + b"\nok-2,Good second\n"
    res = _upload(client, "feed.csv", data)
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"], timeout=120)
    assert job["state"] == "completed_with_errors", job
    assert job["rows_ok"] == 2 and job["rows_failed"] == 1, job
    assert client.get("/v1/products/big").status_code == 404


def test_wrong_content_types_are_4xx(client):
    as_json = client.post("/v1/ingest", json={"path": "feed.csv"})
    assert as_json.status_code == 422, as_json.text
    as_text = client.post("/v1/match", content=b"title=widget", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 422, as_text.text
    as_form = client.post("/v1/match", data={"offer": "widget"})
    assert as_form.status_code == 422, as_form.text
    broken = client.post(
        "/v1/ingest",
        content=b"--x\r\nnot really multipart",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert 400 <= broken.status_code < 500, broken.text


def test_oversize_upload_is_413_and_leaves_nothing(tmp_path, sqlite_url, tiny_encoder):
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(tmp_path / "var", sqlite_url, max_upload_bytes=1_000_000)
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    rows = b"external_id,title\n" + b"".join(f"id-{i},Widget number {i}\n".encode() for i in range(80_000))
    assert len(rows) > 1_000_000
    with TestClient(app, raise_server_exceptions=False) as client:
        res = _upload(client, "feed.csv", rows)
        assert res.status_code == 413, res.text
        assert "1000000" in res.json()["detail"]
        _nothing_stored(client, settings)
    assert app.state.unhandled_errors == 0
