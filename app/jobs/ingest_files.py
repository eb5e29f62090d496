"""Reading catalogue and feed files row by row: CSV (with a header) and JSON Lines.

A file that cannot be read at all is refused at upload (`check_upload`); inside a readable
file every row is judged alone, so one bad row never costs the good ones, and no row is ever
dropped without a report: a row is either returned with its data or returned with the reason
it cannot be read.

CSV is read from bytes, one physical line at a time (lines end in LF, CRLF or a lone CR), so
every row knows the byte offset and the line where it starts (bulk matching seeks to them).
A quoting fault confined to one line is that row's error. A fault that spans lines is the
mark of an unbalanced quote that swallowed the rows after it (a 200-row file with a stray `"`
in row 3 would otherwise read as 3 rows): such a file is refused as a whole, naming the line
where the quote opened, before anything is stored (`check_upload`, and the job's first pass).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from app.schemas.product import ProductRow

CSV, JSONL = "csv", "jsonl"
FORMATS = (CSV, JSONL)
MAX_LINE_BYTES = 1_000_000
REQUIRED_COLUMNS = ("external_id", "title")
KNOWN_FIELDS = set(ProductRow.model_fields)
LIST_FIELDS = {"image_urls"}
JSON_FIELDS = {"attributes"}
# Columns whose values never hold a line break (ids, codes, numbers, short labels): a quoted
# value of one of them that runs over several lines is an unbalanced quote, not data. Titles,
# descriptions, attributes and unknown columns may span lines.
SINGLE_LINE_COLUMNS = frozenset(
    {"external_id", "offer_id", "id", "brand", "category", "price", "currency", "source", "image_urls"}
)


class UnreadableFile(ValueError):
    """The file as a whole cannot be ingested (format, encoding, header, quoting)."""


class UnsupportedFileType(UnreadableFile):
    """The file is an archive, a compressed file or other binary data (-> 415)."""


# Leading bytes of archives and compressed files: never decompressed, always refused.
COMPRESSED_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"Rar!\x1a\x07": "rar",
}
ARCHIVE_SUFFIXES = {
    ".zip": "zip",
    ".gz": "gzip",
    ".tgz": "gzip",
    ".bz2": "bzip2",
    ".xz": "xz",
    ".7z": "7z",
    ".zst": "zstd",
    ".rar": "rar",
    ".tar": "tar",
}
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")
# Byte-order marks of the encodings that are text but not UTF-8 (UTF-32 first: its LE mark
# starts with UTF-16's).
WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


COMPRESSORS = frozenset({"gzip", "bzip2", "xz", "zstd"})


def archive_message(kind: str) -> str:
    """The one answer to an archive or compressed file, whether it was found by its declared
    content type, its name or its leading bytes."""
    what = "compressed files" if kind in COMPRESSORS else "archives"
    return f"{kind} {what} are not accepted: upload the CSV/JSONL file itself, uncompressed (nothing is ever unpacked)"


def wide_encoding_message(kind: str) -> str:
    return (
        f"the file is {kind}: convert it to UTF-8 and upload again "
        f"(e.g. iconv -f {kind} -t UTF-8 in.csv > out.csv, or 'CSV UTF-8' when saving from a spreadsheet)"
    )


@dataclass(frozen=True)
class RowStart:
    """Where a row starts: the byte offset to seek to, the data rows and the lines before it."""

    offset: int
    number: int  # data rows before this one (row numbers continue from here)
    line: int = 0  # physical lines before this one (the row starts on line `line + 1`)


@dataclass
class RawRow:
    number: int  # 1-based data row (CSV header excluded; JSONL line number)
    data: dict[str, Any] | None
    error: str | None = None


@dataclass
class RowResult:
    number: int
    row: ProductRow | None
    errors: list[tuple[str | None, str]]


def detect_format(filename: str | None, declared: str | None = None) -> str:
    if declared:
        fmt = declared.lower().replace("-", "").replace("json_lines", "jsonl")
        if fmt in ("jsonl", "ndjson", "jsonlines"):
            return JSONL
        if fmt == CSV:
            return CSV
        raise UnreadableFile(f"format must be one of {FORMATS}, got {declared!r}")
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return CSV
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return JSONL
    for suffix, kind in ARCHIVE_SUFFIXES.items():
        if name.endswith(suffix):
            raise UnsupportedFileType(archive_message(kind))
    if name.endswith(SPREADSHEET_SUFFIXES):
        raise UnreadableFile(
            "spreadsheet workbooks are not a supported format: save the sheet as 'CSV UTF-8' and upload that"
        )
    raise UnreadableFile("cannot tell the file format: name the file .csv or .jsonl, or pass format=csv|jsonl")


def _looks_utf16_without_bom(head: bytes) -> bool:
    """ASCII text in UTF-16: every other byte of the first ones is NUL (and only those)."""
    sample = head[: len(head) - len(head) % 2]
    if len(sample) < 4:
        return False
    even, odd = sample[0::2], sample[1::2]
    return (even.count(0) == len(even) and odd.count(0) == 0) or (odd.count(0) == len(odd) and even.count(0) == 0)


def check_upload(path: Path, fmt: str) -> None:
    """Refuse empty, archived, binary, non-UTF-8 files, CSVs without the required columns and
    CSVs whose quoting swallows rows (every row is read once here)."""
    check_encoding(path)
    if fmt == CSV:
        header = csv_header(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise UnreadableFile(f"the CSV header lacks required column(s) {missing}; found {header[:20]}")
        check_csv_rows(path)


def check_encoding(path: Path) -> None:
    """Refuse empty files, archives and compressed files, UTF-16/32, binary data and invalid UTF-8."""
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFile("the file is empty")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as fh:
        head = fh.read(64)
        for magic, kind in COMPRESSED_MAGIC.items():
            if head.startswith(magic):
                raise UnsupportedFileType(archive_message(kind))
        for bom, kind in WIDE_BOMS:
            if head.startswith(bom):
                raise UnreadableFile(wide_encoding_message(kind))
        if _looks_utf16_without_bom(head):
            raise UnreadableFile(wide_encoding_message("UTF-16"))
        fh.seek(0)
        while chunk := fh.read(1 << 20):
            if b"\x00" in chunk:
                raise UnsupportedFileType("the file looks binary (it contains NUL bytes); send UTF-8 CSV or JSON Lines")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise UnreadableFile(f"the file is not valid UTF-8 (byte offset {offset + exc.start})") from exc
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise UnreadableFile("the file is not valid UTF-8 (it ends inside a character)") from exc


def check_csv_rows(path: Path) -> None:
    """Read every row once: a duplicated header column or a quoting fault that spans lines
    refuses the file (single-row faults stay row errors for the job to report)."""
    with path.open("rb") as fh:
        header, _ = read_csv_header(fh)
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            raise UnreadableFile(f"the CSV header repeats column(s) {dupes}")
        for _ in iter_csv_rows(fh):
            pass


# -- CSV -------------------------------------------------------------------------------------


class _LineTooLong(Exception):
    """A physical line over MAX_LINE_BYTES (its rest has been skipped)."""


_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


class _Lines:
    """Decoded physical lines of a binary file, for csv.reader.

    Lines end in LF, CRLF or a lone CR (as with ``newline=""``). ``pos`` is the byte offset
    after the last line handed out and ``line`` the number of lines handed out so far, so
    before a ``next(reader)`` they say where that row starts; ``texts`` holds the lines of the
    row being read (cleared by the caller at each row).
    """

    def __init__(self, fh: IO[bytes], pos: int, line: int) -> None:
        self.fh = fh
        self.pos = pos
        self.line = line
        self.pending: list[bytes] = []
        self.texts: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pending:
            piece = self.pending.pop(0)
        else:
            piece = self.fh.readline(MAX_LINE_BYTES + 1)
            if not piece:
                raise StopIteration
            if len(piece) > MAX_LINE_BYTES and not piece.endswith(b"\n"):
                skipped = len(piece)
                while (rest := self.fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    skipped += len(rest)
                skipped += len(rest)
                self.pos += skipped
                self.line += 1
                raise _LineTooLong
            cr = piece.find(b"\r")
            if cr >= 0 and not (cr == len(piece) - 1 or (cr == len(piece) - 2 and piece.endswith(b"\n"))):
                # A CR that does not end the line: lone-CR line ends inside (split them).
                self.pending = [p for p in _LONE_CR.split(piece) if p]
                piece = self.pending.pop(0)
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableFile(f"line {self.line + 1} is not valid UTF-8") from exc
        if self.pos == 0:
            text = text.removeprefix("\ufeff")
        self.pos += len(piece)
        self.line += 1
        self.texts.append(text)
        return text


def read_csv_header(fh: IO[bytes]) -> tuple[list[str], RowStart]:
    """The header's column names and where the first data row starts."""
    fh.seek(0)
    lines = _Lines(fh, 0, 0)
    try:
        header = next(csv.reader(lines, strict=True))
    except StopIteration as exc:
        raise UnreadableFile("the CSV file has no header row") from exc
    except (csv.Error, _LineTooLong) as exc:
        raise UnreadableFile(f"the CSV header cannot be parsed: {exc or 'line too long'}") from exc
    return [h.strip() for h in header], RowStart(lines.pos, 0, lines.line)


def csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        return read_csv_header(fh)[0]


def _quoting_fault(number: int, first: int, last: int, detail: str) -> UnreadableFile:
    return UnreadableFile(
        f"CSV quoting error: data row {number}, which starts on line {first}, runs to line {last} and {detail}. "
        f'Most likely a quote (") on line {first} opens a value that is not closed on that line, so the '
        "rows after it would be read as part of that value. Fix the quoting (inside a quoted value a quote "
        'is written twice: "") and send the file again; nothing from this file was stored.'
    )


def _cells(text: str) -> list[str] | None:
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error:
        return None


def _is_row(text: str, width: int) -> bool:
    cells = _cells(text)
    return cells is not None and len(cells) == width


def _is_row_but_one_quote(text: str, width: int, limit: int = 16) -> bool:
    """Whether ``text`` reads as a whole row once one of its (first ``limit``) quotes is dropped."""
    at = -1
    for _ in range(limit):
        at = text.find('"', at + 1)
        if at < 0:
            return False
        if _is_row(text[:at] + text[at + 1 :], width):
            return True
    return False


def _multiline_fault(
    header: list[str],
    values: list[str],
    texts: list[str],
    number: int,
    first: int,
    single_line: frozenset[str] = SINGLE_LINE_COLUMNS,
) -> UnreadableFile | None:
    """Why a row spanning several lines must be an unbalanced quote, if it must.

    A title or a description may span lines, but an id, a price or a brand never does, the row
    must have the header's width, and its lines must not all be rows themselves: when the first
    line (less one of its quotes: the stray one), every line inside and the last line (as it is,
    or less one quote) each read as a whole row, a stray quote has swallowed rows (e.g. a quote
    opened in one row and closed by an inch mark in a later one).
    """
    last = first + len(texts) - 1
    width = len(header)
    if len(values) != width:
        return _quoting_fault(number, first, last, f"has {len(values)} columns instead of {width}")
    for name, value in zip(header, values):
        if name in single_line and ("\n" in value or "\r" in value):
            return _quoting_fault(number, first, last, f"its {name!r} value holds a line break")
    head, inside, tail = texts[0], texts[1:-1], texts[-1]
    if (
        _is_row_but_one_quote(head, width)
        and all(_is_row(text, width) for text in inside)
        and (_is_row(tail, width) or _is_row_but_one_quote(tail, width))
    ):
        return _quoting_fault(number, first, last, "each of those lines reads as a row on its own")
    return None


def iter_csv_rows(
    fh: IO[bytes], start: RowStart | None = None, single_line: frozenset[str] = SINGLE_LINE_COLUMNS
) -> Iterator[tuple[RowStart, RawRow]]:
    """(where the row starts, the row) for each data row from ``start`` (default: the first).

    Blank lines are not rows. Raises UnreadableFile for a quoting fault that spans lines.
    ``single_line``: the columns whose values never hold a line break (other files than
    catalogues and feeds name their own, e.g. the feedback import's id and label columns).
    """
    header, data_start = read_csv_header(fh)
    start = start or data_start
    fh.seek(start.offset)
    lines = _Lines(fh, start.offset, start.line)
    reader = csv.reader(lines, strict=True)
    number = start.number
    while True:
        here = RowStart(lines.pos, number, lines.line)
        first = here.line + 1
        lines.texts = []
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if lines.line - here.line > 1:
                raise _quoting_fault(number + 1, first, lines.line, f"cannot be parsed there ({exc})") from exc
            number += 1
            yield here, RawRow(number, None, f"CSV syntax error on line {first}: {exc}")
            continue
        except _LineTooLong as exc:
            if lines.line - here.line > 1:
                detail = f"line {lines.line} is over {MAX_LINE_BYTES} bytes"
                raise _quoting_fault(number + 1, first, lines.line, detail) from exc
            number += 1
            yield here, RawRow(number, None, f"line {first} is longer than {MAX_LINE_BYTES} bytes")
            continue
        if not values or all(not v.strip() for v in values):
            continue  # blank lines are not rows
        number += 1
        if lines.line - here.line > 1:
            fault = _multiline_fault(header, values, lines.texts, number, first, single_line)
            if fault is not None:
                raise fault
        if len(values) != len(header):
            yield here, RawRow(number, None, f"expected {len(header)} columns, found {len(values)}")
            continue
        yield here, RawRow(number, dict(zip(header, values)))


# -- JSON Lines ------------------------------------------------------------------------------


def iter_jsonl_rows(fh: IO[bytes], start: RowStart | None = None) -> Iterator[tuple[RowStart, RawRow]]:
    """(where the row starts, the row) for each non-blank line; rows are numbered by line."""
    start = start or RowStart(0, 0, 0)
    fh.seek(start.offset)
    number = start.number
    while True:
        here = RowStart(fh.tell(), number, number)
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1  # JSON Lines rows are line numbers, blank lines included
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            # Skip the rest of an over-long line without holding it in memory.
            while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield here, RawRow(number, None, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = line.decode("utf-8-sig" if here.offset == 0 else "utf-8").strip()
        except UnicodeDecodeError:
            yield here, RawRow(number, None, "line is not valid UTF-8")
            continue
        if not text:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield here, RawRow(number, None, f"line is not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            yield here, RawRow(number, None, f"line must be a JSON object, got {type(data).__name__}")
            continue
        yield here, RawRow(number, data)


def iter_rows(path: Path, fmt: str, start: RowStart | None = None) -> Iterator[tuple[RowStart, RawRow]]:
    """(where the row starts, the row) for each row of a CSV or JSON Lines file."""
    with path.open("rb") as fh:
        yield from (iter_csv_rows(fh, start) if fmt == CSV else iter_jsonl_rows(fh, start))


def iter_raw_rows(path: Path, fmt: str) -> Iterator[RawRow]:
    for _, raw in iter_rows(path, fmt):
        yield raw


# -- validation ------------------------------------------------------------------------------
class CellError(ValueError):
    """A cell that cannot be read as its field's type (e.g. JSON that does not parse)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _coerce_csv_cell(field: str, value: str) -> Any:
    value = value.strip()
    if value == "":
        return None
    if field in LIST_FIELDS:
        if value.startswith("["):
            return json.loads(value)
        return [v.strip() for v in value.split("|") if v.strip()]
    if field in JSON_FIELDS:
        return json.loads(value)
    return value


def split_fields(data: dict[str, Any], fmt: str, known: Collection[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A row's ``known`` fields and its other non-blank columns (stripped), keys stripped.

    CSV cells of known fields are coerced (blank -> absent, list and JSON fields parsed); fields
    that end up None are left out. Raises CellError for a JSON cell that does not parse.
    """
    fields: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).strip()
        if key in known:
            try:
                fields[key] = _coerce_csv_cell(key, value) if fmt == CSV and isinstance(value, str) else value
            except json.JSONDecodeError as exc:
                raise CellError(key, f"not valid JSON: {exc.msg}") from exc
        elif value not in (None, ""):
            other[key] = value.strip() if isinstance(value, str) else value
    return {k: v for k, v in fields.items() if v is not None}, other


def validation_errors(exc: ValidationError) -> list[tuple[str | None, str]]:
    """(field path, message) for each error of a pydantic validation."""
    return [(".".join(str(p) for p in e["loc"]) or None, e["msg"]) for e in exc.errors()]


def to_product(raw: RawRow, fmt: str) -> RowResult:
    """Validate one raw row; unknown columns become attributes."""
    if raw.data is None:
        return RowResult(raw.number, None, [(None, raw.error or "unreadable row")])
    try:
        data, extra = split_fields(raw.data, fmt, KNOWN_FIELDS)
    except CellError as exc:
        return RowResult(raw.number, None, [(exc.field, exc.message)])
    if extra:
        attrs = data.get("attributes") or {}
        if not isinstance(attrs, dict):
            return RowResult(raw.number, None, [("attributes", "must be a JSON object")])
        data["attributes"] = {**extra, **attrs}
    try:
        return RowResult(raw.number, ProductRow.model_validate(data), [])
    except ValidationError as exc:
        return RowResult(raw.number, None, validation_errors(exc))
