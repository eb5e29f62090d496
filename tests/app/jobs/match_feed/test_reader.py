"""Reading a feed: chunk offsets that resume on the same rows (CSV and JSON Lines), row validation."""

from __future__ import annotations

import json

from app.jobs.ingest_files import RawRow
from app.jobs.match_feed.reader import check_feed, iter_feed, scan_feed, to_offer
from tests.app.jobs.match_feed.test_runner import _offer


def test_chunk_offsets_resume_the_same_rows_csv(tmp_path):
    feed = tmp_path / "feed.csv"
    lines = ["\ufeffoffer_id,title,brand"]
    for i in range(23):
        if i == 5:
            lines.append("")  # a blank line is not a row
        title = f'"multi\nline {i}"' if i % 7 == 0 else f"Title {i}"
        lines.append(f"o{i},{title},Acme")
    lines.append("o-short,only two")
    feed.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    check_feed(feed, "csv")
    full = [(raw.number, raw.data, raw.error) for _, raw in iter_feed(feed, "csv")]
    assert len(full) == 24 and full[0][1]["offer_id"] == "o0" and full[-1][2] == "expected 3 columns, found 2"
    assert [n for n, _, _ in full] == list(range(1, 25))
    scan = scan_feed(feed, "csv", chunk_rows=5)
    assert scan.total == 24 and len(scan.chunks) == 5
    for c, start in enumerate(scan.chunks):
        got = [(raw.number, raw.data, raw.error) for _, raw in iter_feed(feed, "csv", start)]
        assert got == full[c * 5 :], c


def test_chunk_offsets_resume_the_same_rows_jsonl(tmp_path):
    feed = tmp_path / "feed.jsonl"
    rows = [json.dumps(_offer(i)) for i in range(12)]
    rows.insert(3, "")
    rows.insert(6, "{not json")
    rows.insert(8, "[1, 2]")
    feed.write_bytes(("\ufeff" + "\n".join(rows) + "\n").encode())
    full = [(raw.number, raw.data, raw.error) for _, raw in iter_feed(feed, "jsonl")]
    assert len(full) == 14  # the blank line is skipped, its line number is not reused
    assert full[0][1]["offer_id"] == "o-00000"
    scan = scan_feed(feed, "jsonl", chunk_rows=4)
    for c, start in enumerate(scan.chunks):
        assert [(r.number, r.data, r.error) for _, r in iter_feed(feed, "jsonl", start)] == full[c * 4 :]


def test_row_validation_errors():
    long_title = "x" * 2001
    cases = {
        "missing id": ({"title": "A thing"}, "offer_id"),
        "blank title": ({"offer_id": "a", "title": "  "}, "title"),
        "punctuation title": ({"offer_id": "a", "title": "!!!"}, "title"),
        "over-long title": ({"offer_id": "a", "title": long_title}, "title"),
        "over-long id": ({"offer_id": "i" * 256, "title": "A thing"}, "offer_id"),
        "bad price": ({"offer_id": "a", "title": "A thing", "price": "abc"}, "price"),
    }
    for name, (data, field) in cases.items():
        result = to_offer(RawRow(1, data), "jsonl")
        assert result.offer is None, name
        assert result.errors[0][0] == field, (name, result.errors)
    ok = to_offer(RawRow(7, {"id": 12, "title": " Acme Widget ", "colour": "red", "price": "3.5"}), "csv")
    assert ok.offer_id == "12" and ok.offer["title"] == "Acme Widget" and ok.offer["price"] == 3.5
    assert "colour" not in ok.offer  # extra columns are ignored, never fatal
