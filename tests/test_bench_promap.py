from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks.bench_promap import e2e_benchmark, read_promap
from benchmarks.e2e_metrics import ATTRIBUTES_JSON_CHARS

HEADER = ["name1", "short_description1", "specification1", "price1", "id1", "name2", "long_description2",
          "specification2", "price2", "id2", "match"]  # fmt: skip


def _write(folder: Path, rows: list[list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "shop-test_data.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)


def test_reader_maps_promap_rows_to_service_products(tmp_path: Path) -> None:
    spec1 = json.dumps([{"key": "Brand", "value": "Sony"}, {"key": "Manufacturer Part Number", "value": "DSC-W800"}])
    spec2 = json.dumps([{"key": "Manufacturer", "value": "Sony"}, {"key": "Item model number", "value": "DSCW800"}])
    _write(
        tmp_path,
        [
            ["Sony camera", "a compact", spec1, "$1,099.50", "w1", "Sony Cyber-shot", "long", spec2, "", "a1", "1"],
            ["", "", "[]", "", "w2", "Some product", "", "not json", "5", "a2", "0"],  # no title: left out
            ["Lamp", "", "not json", "abc", "", "Desk lamp", "", "[]", "12", "", "0"],
        ],
    )
    (pairs,) = read_promap(tmp_path, attributes=True).values()
    assert [p.label for p in pairs] == [1, 0]
    first = pairs[0]
    assert first.left == {
        "title": "Sony camera",
        "brand": "Sony",
        "description": "a compact",
        "price": 1099.5,
        "attributes": {"Brand": "Sony", "Manufacturer Part Number": "DSC-W800"},
    }
    assert first.right["brand"] == "Sony" and first.right["description"] == "long" and "price" not in first.right
    assert (first.left_id, first.right_id) == ("w1", "a1")
    lamp = pairs[1]
    assert lamp.left == {"title": "Lamp"} and lamp.left_id.startswith("shop-test_data:2")  # bad JSON, bad price
    (plain,) = read_promap(tmp_path, attributes=False).values()
    assert "attributes" not in plain[0].left and plain[0].left["brand"] == "Sony"


def test_reader_needs_a_folder_with_promap_files(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no \\*test_data.csv"):
        read_promap(tmp_path, attributes=True)


def test_a_promap_file_as_an_end_to_end_benchmark(tmp_path: Path) -> None:
    spec = json.dumps([{"key": "Item model number", "value": "DSCW800"}] + [
        {"key": f"key {n}", "value": "x" * 900} for n in range(40)
    ])  # fmt: skip
    camera, lamp = ["Sony camera", "a compact", "[]", "99", "https://w/1"], ["Desk lamp", "", "[]", "", "https://w/2"]
    w800, alpha = ["Sony W800", "", spec, "", "https://a/1"], ["Sony Alpha", "", "[]", "", "https://a/2"]
    _write(tmp_path, [camera + w800 + ["1"], camera + alpha + ["0"], lamp + w800 + ["0"]])
    bench = e2e_benchmark(tmp_path / "shop-test_data.csv")
    assert bench.name == "shop"
    assert [p["external_id"] for p in bench.products] == ["r00001", "r00002"]  # a URL is no external id
    w800_product = bench.products[0]
    assert w800_product["title"] == "Sony W800" and w800_product["attributes"]["Item model number"] == "DSCW800"
    assert len(json.dumps(w800_product["attributes"])) <= ATTRIBUTES_JSON_CHARS  # the service's bound, not all 41
    assert [o.fields["title"] for o in bench.offers] == ["Sony camera", "Desk lamp"]
    camera_key, lamp_key = (o.key for o in bench.offers)
    assert bench.pairs == [(camera_key, "r00001", 1), (camera_key, "r00002", 0), (lamp_key, "r00001", 0)]
    assert bench.known == bench.pairs and bench.offers[0].left_ids == ("https://w/1",)
