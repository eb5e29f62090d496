"""The catalogue / feed file readers: no row is ever lost silently.

Examples first (a stray quote, an inch mark, UTF-16, archives, line endings), then two
property-based nets (hypothesis): random CSV and JSON Lines files, with stray quotes and random
bytes thrown in, are either refused naming the problem or read so that every data row comes back
once, in order, either as data or with the reason it cannot be read; and through the real
ingestion job on SQLite every row is stored or reported and the counters add up.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.db.tables import Product
from app.jobs.context import JobContext
from app.jobs.ingest_files import (
    MAX_LINE_BYTES,
    UnreadableFile,
    UnsupportedFileType,
    check_upload,
    detect_format,
    iter_raw_rows,
    iter_rows,
    to_product,
)
from app.jobs.match_feed.reader import check_feed, iter_feed, scan_feed
from app.jobs.runner import run_job
from tests.conftest import make_settings

HEADER = ["external_id", "title", "description", "price"]


def _cell(value: str) -> str:
    # RFC 4180 quoting (csv.writer leaves a line feed unquoted when the terminator is a lone CR).
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value


def _csv_bytes(rows: list[list[str]], header: list[str] = HEADER, terminator: str = "\r\n") -> bytes:
    return "".join(",".join(_cell(v) for v in row) + terminator for row in [header, *rows]).encode()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _catalogue_200(stray_row: int | None = None) -> bytes:
    lines = ["external_id,title,price"] + [f"p{i},Acme widget {i},{i}.5" for i in range(1, 201)]
    if stray_row is not None:
        lines[stray_row] = lines[stray_row].replace("Acme", '"Acme')
    return ("\n".join(lines) + "\n").encode()


# -- examples ----------------------------------------------------------------------------------


def test_a_stray_quote_refuses_the_file_naming_its_line(tmp_path):
    path = _write(tmp_path, "cat.csv", _catalogue_200(stray_row=3))
    with pytest.raises(UnreadableFile) as refused:
        check_upload(path, "csv")
    message = str(refused.value)
    assert "data row 3" in message and "line 4" in message and "nothing from this file was stored" in message
    # The job's own pass (a file that skipped the upload check) and the feed reader say the same.
    with pytest.raises(UnreadableFile, match="data row 3"):
        list(iter_raw_rows(path, "csv"))
    feed = _write(tmp_path, "feed.csv", _catalogue_200(stray_row=3).replace(b"external_id", b"offer_id", 1))
    with pytest.raises(UnreadableFile, match="line 4"):
        check_feed(feed, "csv")
    with pytest.raises(UnreadableFile, match="line 4"):
        scan_feed(feed, "csv", 50)
    # Without the stray quote all 200 rows are read.
    clean = _write(tmp_path, "clean.csv", _catalogue_200())
    check_upload(clean, "csv")
    assert [r.number for r in iter_raw_rows(clean, "csv")] == list(range(1, 201))


def test_a_quote_closed_by_an_inch_mark_in_the_next_row_is_refused(tmp_path):
    # Row 1 opens a quote, row 2's inch mark closes it: one 3-column "row" of two, unless caught.
    data = b'external_id,title,price\np1,"Sony TV,10\np2,iMac 27",1299\np3,Mouse,5\n'
    with pytest.raises(UnreadableFile, match="runs to line 3 and each of those lines reads as a row"):
        check_upload(_write(tmp_path, "inch.csv", data), "csv")
    # ... and so is one that swallows whole rows before closing.
    data = b'external_id,title,price\np1,"Sony TV,10\np2,Mouse,5\np3,iMac 27",1299\n'
    with pytest.raises(UnreadableFile, match="runs to line 4 and each of those lines reads as a row"):
        check_upload(_write(tmp_path, "inch3.csv", data), "csv")


def test_a_line_break_in_an_id_or_a_wrong_width_over_lines_is_refused(tmp_path):
    data = b'external_id,title,price\n"p1\np2",Widget,10\n'
    with pytest.raises(UnreadableFile, match="'external_id' value holds a line break"):
        check_upload(_write(tmp_path, "id.csv", data), "csv")
    data = b'external_id,title,price\np1,"Widget\nand more",10,extra\n'
    with pytest.raises(UnreadableFile, match="has 4 columns instead of 3"):
        check_upload(_write(tmp_path, "wide.csv", data), "csv")


def test_values_that_span_lines_are_read_as_data(tmp_path):
    rows = [
        ["p1", "Sony WH-1000XM5\nheadphones", "Noise cancelling.\nBlack, 30 h battery.\n\nIn the box: case", "349"],
        ["p2", 'Monitor 27" IPS', 'A "quoted" word, a comma', "199.5"],
        ["p3", "Plain", "", ""],
    ]
    for terminator in ("\r\n", "\n", "\r"):
        path = _write(tmp_path, "multi.csv", _csv_bytes(rows, terminator=terminator))
        check_upload(path, "csv")
        read = list(iter_raw_rows(path, "csv"))
        assert [r.number for r in read] == [1, 2, 3]
        assert [list(r.data.values()) for r in read] == rows, terminator  # type: ignore[union-attr]


def test_single_line_faults_are_row_errors_and_reading_goes_on(tmp_path):
    long_line = "p3," + "x" * (MAX_LINE_BYTES + 10) + ",1\n"
    data = (
        'external_id,title,price\np1,Good,1\np2,"broken "quote" here,2\n' + long_line + "\np4,Short,2,extra\np5,Last,5"
    ).encode()
    path = _write(tmp_path, "faults.csv", data)
    check_upload(path, "csv")
    read = list(iter_raw_rows(path, "csv"))
    assert [r.number for r in read] == [1, 2, 3, 4, 5]
    assert read[0].data == {"external_id": "p1", "title": "Good", "price": "1"}
    assert read[1].error is not None and "line 3" in read[1].error
    assert read[2].error == f"line 4 is longer than {MAX_LINE_BYTES} bytes"
    assert read[3].error == "expected 3 columns, found 4"
    assert read[4].data == {"external_id": "p5", "title": "Last", "price": "5"}


@pytest.mark.parametrize(
    "encoding,bom",
    [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b""), ("utf-32-le", b"\xff\xfe\x00\x00")],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_utf16_and_utf32_files_are_refused_with_what_to_do(tmp_path, encoding, bom, fmt):
    text = "external_id,title\np1,Caf\u00e9 cr\u00e8me\n" if fmt == "csv" else '{"external_id": "p1", "title": "x"}\n'
    path = _write(tmp_path, f"wide.{fmt}", bom + text.encode(encoding))
    kind = "UTF-32" if "32" in encoding else "UTF-16"
    for check in (check_upload, check_feed):
        with pytest.raises(UnreadableFile) as refused:
            check(path, fmt)
        assert not isinstance(refused.value, UnsupportedFileType)  # text in another encoding: 422, not 415
        assert f"the file is {kind}: convert it to UTF-8" in str(refused.value)


def test_archives_are_named_as_such(tmp_path):
    for name in ("catalogue.zip", "catalogue.csv.zip", "feed.jsonl.gz", "dump.tar"):
        with pytest.raises(UnsupportedFileType, match="are not accepted: upload the CSV/JSONL file itself"):
            detect_format(name)
    with pytest.raises(UnsupportedFileType, match="zip archives are not accepted: upload the CSV/JSONL file"):
        detect_format("Catalogue.ZIP")
    with pytest.raises(UnreadableFile, match="save the sheet as 'CSV UTF-8'"):
        detect_format("products.xlsx")
    # A zip whatever its name or declared format.
    zipped = _write(tmp_path, "really-a-zip.csv", b"PK\x03\x04" + b"\x14\x00" * 40)
    with pytest.raises(UnsupportedFileType, match="zip archives are not accepted"):
        check_upload(zipped, detect_format("really-a-zip.csv", "csv"))


def test_jsonl_rows_are_lines_and_resume_from_any_row(tmp_path):
    lines = [json.dumps({"external_id": f"p{i}", "title": f"T {i}"}) for i in range(6)]
    lines[2] = "{not json"
    lines.insert(4, "   ")
    path = _write(tmp_path, "cat.jsonl", ("\n".join(lines) + "\n").encode())
    full = list(iter_rows(path, "jsonl"))
    assert [raw.number for _, raw in full] == [1, 2, 3, 4, 6, 7]  # the blank line 5 is no row
    for i, (start, _) in enumerate(full):
        assert [raw for _, raw in iter_rows(path, "jsonl", start)] == [raw for _, raw in full[i:]]


# -- property: the readers ---------------------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from(list("ab Z9é,\"'\n\r;")), max_size=12)
ROWS = st.lists(st.tuples(TEXT, TEXT, st.sampled_from(["", "1", "2.5", "abc", "-1"])), min_size=1, max_size=12)


def _generated(rows: list[tuple[str, str, str]]) -> list[list[str]]:
    # Unique, single-line ids; titles and descriptions may hold anything, line breaks included.
    return [[f"id{i}", title, description, price] for i, (title, description, price) in enumerate(rows)]


def _read_all(path: Path, fmt: str) -> list:
    """Every row once, checked against resuming from each row's start (what jobs do)."""
    full = list(iter_rows(path, fmt))
    assert [raw.number for _, raw in full] == sorted({raw.number for _, raw in full})
    if fmt == "csv":
        assert [raw.number for _, raw in full] == list(range(1, len(full) + 1))
    for i in range(0, len(full), 3):
        assert [raw for _, raw in iter_rows(path, fmt, full[i][0])] == [raw for _, raw in full[i:]]
    for _, raw in full:
        assert (raw.data is None) == (raw.error is not None)
        result = to_product(raw, fmt)
        assert (result.row is None) == bool(result.errors)  # stored, or reported with a reason
    return [raw for _, raw in full]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, terminator=st.sampled_from(["\r\n", "\n", "\r"]), stray=st.none() | st.integers(min_value=0))
def test_csv_rows_come_back_once_or_the_file_is_refused(tmp_path, rows, terminator, stray):
    """A generated CSV, with or without one stray quote anywhere after the header: either the file
    is refused naming a line, or every row written before and after the one that holds the stray
    quote keeps its place and comes back exactly as written or as a reported error, and that row
    comes back as one row or more (data or errors), never as none. (A stray quote in a row whose
    value already spans lines is out of reach: documented in the README.)

    The one refusal a well-formed file can get is the documented ambiguity: a value spanning lines
    each of which reads as a whole row is taken for rows swallowed by a stray quote."""
    generated = _generated(rows)
    text = _csv_bytes(generated, terminator=terminator).decode()
    header_end = len(_csv_bytes([], terminator=terminator).decode())
    hit = None
    if stray is not None:
        at = header_end + stray % (len(text) - header_end)
        text = text[:at] + '"' + text[at:]
        # The row that holds the stray quote: count the rows written before that character.
        ends = [len(_csv_bytes(generated[: k + 1], terminator=terminator).decode()) for k in range(len(generated))]
        hit = next(k for k, end in enumerate(ends) if at < end)
        # Out of reach, documented: a stray quote in a row whose own value already spans lines.
        assume(not any("\n" in v or "\r" in v for v in generated[hit]))
    path = _write(tmp_path, f"gen-{uuid.uuid4().hex}.csv", text.encode())
    try:
        check_upload(path, "csv")
    except UnreadableFile as exc:
        assert "line" in str(exc)
        if stray is None:
            assert "each of those lines reads as a row" in str(exc), exc
            assert any(("\n" in v or "\r" in v) and "," in v for row in generated for v in row), exc
        return
    read = [raw.data for raw in _read_all(path, "csv")]
    expected = [dict(zip(HEADER, row)) for row in generated]
    if hit is None:
        assert read == expected
        return
    after = len(generated) - hit - 1
    assert read[:hit] == expected[:hit]
    assert len(read) >= len(generated)
    # Each later row keeps its place and comes back as written, or as a reported error (a stray
    # quote closed by the opening quote of a later row's value breaks that row: reported, not lost).
    for got, want in zip(read[len(read) - after :], expected[hit + 1 :]):
        assert got is None or got == want, (got, want)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    objects=st.lists(
        st.dictionaries(st.sampled_from(["external_id", "title", "price", "x"]), JSON_VALUES), max_size=10
    ),
    noise=st.lists(st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=3)), max_size=3),
)
def test_jsonl_every_non_blank_line_is_one_row(tmp_path, objects, noise):
    """Random JSON Lines, with random bytes spliced in: refused at upload (binary, not UTF-8), or
    every non-blank line is exactly one row (data or error), numbered by its line."""
    data = b"\n".join(json.dumps(o).encode() for o in objects) + b"\n"
    for at, blob in noise:
        at %= len(data) + 1
        data = data[:at] + blob + data[at:]
    path = _write(tmp_path, f"gen-{uuid.uuid4().hex}.jsonl", data)
    try:
        check_upload(path, "jsonl")
    except UnreadableFile:
        return
    read = _read_all(path, "jsonl")
    lines = data.split(b"\n")
    expected = [n for n, line in enumerate(lines, start=1) if line.decode("utf-8-sig" if n == 1 else "utf-8").strip()]
    assert [raw.number for raw in read] == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet=st.sampled_from(list('ab1 ,"\n\r\t;é')), max_size=120))
def test_random_csv_bodies_are_read_whole_or_refused(tmp_path, body):
    """Any text after a valid header: refused naming a line, or read so that the rows are numbered
    1..n without gaps, every row is data or an error, and reading resumes identically."""
    path = _write(tmp_path, f"gen-{uuid.uuid4().hex}.csv", ("external_id,title,price\n" + body).encode())
    try:
        check_upload(path, "csv")
    except UnreadableFile as exc:
        assert "line" in str(exc)
        return
    read = _read_all(path, "csv")
    # The bulk-matching job reads feeds with the same reader.
    assert [raw for _, raw in iter_feed(path, "csv")] == read
    assert scan_feed(path, "csv", 4).total == len(read)


# -- property: the ingestion job, end to end on SQLite -------------------------------------------


@pytest.fixture(scope="module")
def ingest_ctx(tmp_path_factory, tiny_encoder):
    from app.db.migrate import upgrade

    folder = tmp_path_factory.mktemp("ingest-prop")
    url = f"sqlite:///{folder / 'prop.db'}"
    upgrade(url)
    settings_ = make_settings(folder / "var", url, ingest_chunk_rows=4)
    return JobContext(settings_, make_session_factory(make_engine(url)), lambda: tiny_encoder), folder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, stray=st.none() | st.integers(min_value=0), fmt=st.sampled_from(["csv", "jsonl"]))
def test_ingestion_stores_or_reports_every_row(ingest_ctx, rows, stray, fmt):
    """Through the real job: refused (nothing stored) or rows_total = ok + unchanged + failed = the
    rows read, each good row stored as read and each bad one reported at its row number."""
    ctx, folder = ingest_ctx
    prefix = uuid.uuid4().hex[:8]
    generated = [[f"{prefix}-{row[0]}", *row[1:]] for row in _generated(rows)]
    if fmt == "csv":
        data = _csv_bytes(generated)
    else:
        data = b"\n".join(json.dumps(dict(zip(HEADER, r))).encode() for r in generated) + b"\n"
    if stray is not None:
        text = data.decode()
        at = stray % (len(text) + 1)
        data = (text[:at] + '"' + text[at:]).encode()
    path = _write(folder, f"{prefix}.{fmt}", data)
    try:
        check_upload(path, fmt)
    except UnreadableFile:
        assume(False)  # refused at upload: covered by the reader properties
    expected = [to_product(raw, fmt) for raw in iter_raw_rows(path, fmt)]
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(path), "format": fmt})
    state = run_job(ctx, job.id, "prop")
    final = jobs.get_job(ctx.factory, job.id)
    assert final is not None and state in ("completed", "completed_with_errors"), final.message if final else None
    assert final.rows_total == len(expected) == final.rows_done
    assert final.rows_ok + final.rows_unchanged + final.rows_failed == final.rows_total
    reported = {e.row for e in jobs.row_errors(ctx.factory, job.id, 10_000)}
    good = {r.row.external_id: r for r in expected if r.row is not None}
    with ctx.factory() as session:
        stored = {p.external_id: p for p in session.scalars(select(Product).where(Product.external_id.in_(good)))}
    for result in expected:
        if result.row is not None and result.row.external_id in stored and result.number not in reported:
            assert stored[result.row.external_id].title == result.row.title
        else:
            assert result.number in reported, (result.number, result.errors)
    assert final.rows_failed == len(reported)
