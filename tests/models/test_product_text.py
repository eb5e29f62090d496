from __future__ import annotations

import pytest

from models.product_text import is_ditto, parse_ditto, serialize, serialize_product
from training.data.records import Record

ABT = Record(
    id="7",
    fields={"name": "sony turntable pslx350h", "description": "belt drive  system\n33 rpm", "price": None},
    source="A",
)


def test_title_uses_title_then_name() -> None:
    assert ABT.title == "sony turntable pslx350h"
    rec = Record(id="1", fields={"title": "Canon PFI-107C", "name": "other"})
    assert rec.title == "Canon PFI-107C"
    # A missing title falls through to name; no title-like field gives "".
    assert Record(id="2", fields={"title": None, "name": "x y"}).title == "x y"
    assert Record(id="3", fields={"brand": "sony"}).title == ""


def test_title_only_is_the_stripped_value() -> None:
    rec = Record(id="1", fields={"title": "  Apple  iPhone 12 \t"})
    assert serialize(rec) == "Apple iPhone 12"
    assert serialize(rec, "title") == "Apple iPhone 12"


def test_all_is_ditto_in_schema_order_with_empty_missing() -> None:
    text = serialize(ABT, "all")
    # Newlines / runs of ASCII whitespace inside a value collapse (a Ditto line cannot hold them).
    assert text == "COL name VAL sony turntable pslx350h COL description VAL belt drive system 33 rpm COL price VAL"
    assert parse_ditto(text) == {
        "name": "sony turntable pslx350h",
        "description": "belt drive system 33 rpm",
        "price": "",
    }


def test_missing_value_in_the_middle_keeps_ditto_double_space() -> None:
    rec = Record(id="1", fields={"title": "a b", "brand": None, "price": "5.0"})
    # Same layout as the shipped Ditto files: "VAL " + "" + " COL".
    assert serialize(rec, "all") == "COL title VAL a b COL brand VAL  COL price VAL 5.0"


def test_field_list_and_single_field() -> None:
    assert serialize(ABT, ["price", "name"]) == "COL price VAL  COL name VAL sony turntable pslx350h"
    assert serialize(ABT, ["description"]) == "belt drive system 33 rpm"
    assert serialize(ABT, "description") == "belt drive system 33 rpm"
    assert serialize(ABT, ["nonexistent"]) == ""
    with pytest.raises(ValueError):
        serialize(ABT, [])


def test_unicode_spaces_are_kept() -> None:
    # Abt-Buy has no-break spaces; the Ditto files keep them and so must we (byte parity).
    rec = Record(id="1", fields={"name": "nuvi 360\xa0010-10723"})
    assert serialize(rec) == "nuvi 360\xa0010-10723"


def test_serialize_product_matches_record_serialisation() -> None:
    product = {
        "id": 42,
        "title": "Sony WH-1000XM3",
        "brand": "Sony",
        "category": None,
        "description": "noise cancelling",
        "price": 299.0,
    }
    record = Record(id="42", fields={k: None if v is None else str(v) for k, v in product.items() if k != "id"})
    for fields in ("title", "all", ["title", "brand"], ["price"], "brand"):
        assert serialize_product(product, fields) == serialize(record, fields)
    # "all" skips identifier keys and keeps the mapping's order; numbers are written with str().
    assert serialize_product(product, "all") == (
        "COL title VAL Sony WH-1000XM3 COL brand VAL Sony COL category VAL  "
        "COL description VAL noise cancelling COL price VAL 299.0"
    )
    assert serialize_product({"name": "abt style"}) == "abt style"
    assert serialize_product({}) == ""


def test_parse_ditto_edge_cases() -> None:
    # Leading double space after VAL (WDC LSPC), empty values, a value containing "VAL".
    text = 'COL title VAL  "Benq 24" Monitor"@en COL brand VAL COL note VAL VAL 5 COL price VAL '
    assert parse_ditto(text) == {"title": '"Benq 24" Monitor"@en', "brand": "", "note": "VAL 5", "price": ""}
    # "COL" inside a value only splits when it forms a full "COL <attr> VAL" marker.
    assert parse_ditto("COL title VAL red COL blue") == {"title": "red COL blue"}
    assert parse_ditto("COL title VAL") == {"title": ""}
    assert is_ditto("COL a VAL b")
    assert not is_ditto("plain title")
    with pytest.raises(ValueError, match="not a Ditto"):
        parse_ditto("plain title COL a VAL b")


def test_round_trip() -> None:
    rec = Record(id="1", fields={"title": "x  y", "brand": "", "price": "1.0"})
    assert serialize(Record(id="1", fields=dict(parse_ditto(serialize(rec, "all")))), "all") == serialize(rec, "all")


def test_records_are_hashable_and_frozen() -> None:
    a = Record(id="1", fields={"t": "x"})
    b = Record(id="1", fields={"t": "x"})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.id = "2"  # type: ignore[misc]
