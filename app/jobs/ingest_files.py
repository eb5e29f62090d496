"""Reading catalogue files row by row: CSV (with a header) and JSON Lines.

A file that cannot be read at all is refused at upload (`check_upload`); inside a readable
file every row is judged alone, so one bad row never costs the good ones.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.schemas.product import ProductRow

CSV, JSONL = "csv", "jsonl"
FORMATS = (CSV, JSONL)
MAX_LINE_BYTES = 1_000_000
REQUIRED_COLUMNS = ("external_id", "title")
KNOWN_FIELDS = set(ProductRow.model_fields)
LIST_FIELDS = {"image_urls"}
JSON_FIELDS = {"attributes"}


class UnreadableFile(ValueError):
    """The file as a whole cannot be ingested (format, encoding, header)."""


class UnsupportedFileType(UnreadableFile):
    """The file is an archive, a compressed file or other binary data (-> 415)."""


# Leading bytes of archives and compressed files: never decompressed, always refused.
COMPRESSED_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"\x28\xb5\x2f\xfd": "zstd",
}


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
    raise UnreadableFile("cannot tell the file format: name the file .csv or .jsonl, or pass format=csv|jsonl")


def check_upload(path: Path, fmt: str) -> None:
    """Refuse empty, binary, non-UTF-8 files and CSVs without the required columns."""
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFile("the file is empty")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as fh:
        head = fh.read(8)
        for magic, kind in COMPRESSED_MAGIC.items():
            if head.startswith(magic):
                raise UnsupportedFileType(
                    f"the file is a {kind} archive or compressed file; compressed uploads are not "
                    "decompressed: send uncompressed UTF-8 CSV or JSON Lines"
                )
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
    if fmt == CSV:
        header = csv_header(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise UnreadableFile(f"the CSV header lacks required column(s) {missing}; found {header[:20]}")
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            raise UnreadableFile(f"the CSV header repeats column(s) {dupes}")


def _open_text(path: Path) -> io.TextIOWrapper:
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - caller closes


def csv_header(path: Path) -> list[str]:
    with _open_text(path) as fh:
        try:
            header = next(csv.reader(fh, strict=True))
        except StopIteration as exc:
            raise UnreadableFile("the CSV file has no header row") from exc
        except csv.Error as exc:
            raise UnreadableFile(f"the CSV header cannot be parsed: {exc}") from exc
    return [h.strip() for h in header]


def iter_raw_rows(path: Path, fmt: str) -> Iterator[RawRow]:
    if fmt == CSV:
        yield from _iter_csv(path)
    else:
        yield from _iter_jsonl(path)


def _iter_csv(path: Path) -> Iterator[RawRow]:
    with _open_text(path) as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = [h.strip() for h in next(reader)]
        except (StopIteration, csv.Error) as exc:
            raise UnreadableFile("the CSV file has no readable header row") from exc
        number = 0
        while True:
            number += 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RawRow(number, None, f"CSV syntax error near line {reader.line_num}: {exc}")
                continue
            if not values or all(not v.strip() for v in values):
                number -= 1  # blank lines are not rows
                continue
            if len(values) != len(header):
                yield RawRow(number, None, f"expected {len(header)} columns, found {len(values)}")
                continue
            yield RawRow(number, dict(zip(header, values)))


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as fh:
        number = 0
        while True:
            line = fh.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                # Skip the rest of an over-long line without holding it in memory.
                while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                yield RawRow(number, None, f"line is longer than {MAX_LINE_BYTES} bytes")
                continue
            text = line.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            if not text:
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRow(number, None, f"line is not valid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(data, dict):
                yield RawRow(number, None, f"line must be a JSON object, got {type(data).__name__}")
                continue
            yield RawRow(number, data)


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


def to_product(raw: RawRow, fmt: str) -> RowResult:
    """Validate one raw row; unknown columns become attributes."""
    if raw.data is None:
        return RowResult(raw.number, None, [(None, raw.error or "unreadable row")])
    data: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    try:
        for key, value in raw.data.items():
            key = str(key).strip()
            if key in KNOWN_FIELDS:
                data[key] = _coerce_csv_cell(key, value) if fmt == CSV and isinstance(value, str) else value
            elif value not in (None, ""):
                extra[key] = value.strip() if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        return RowResult(raw.number, None, [(key, f"not valid JSON: {exc.msg}")])
    if extra:
        attrs = data.get("attributes") or {}
        if not isinstance(attrs, dict):
            return RowResult(raw.number, None, [("attributes", "must be a JSON object")])
        data["attributes"] = {**extra, **attrs}
    data = {k: v for k, v in data.items() if v is not None}
    try:
        return RowResult(raw.number, ProductRow.model_validate(data), [])
    except ValidationError as exc:
        errors = [(".".join(str(p) for p in e["loc"]) or None, e["msg"]) for e in exc.errors()]
        return RowResult(raw.number, None, errors)
