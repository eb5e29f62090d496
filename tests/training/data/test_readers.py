"""Readers: documented counts of the shipped benchmarks, any-folder support, clear errors."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
from pathlib import Path

import pytest

from models.product_text import serialize
from training.data import load_dataset
from training.data.readers import (
    data_root,
    read_deepmatcher,
    read_ditto,
    read_wdc_block,
    read_wdc_products,
)
from training.data.records import Pair, PairDataset, Record

ROOT = data_root()

needs_data = pytest.mark.skipif(not (ROOT / "abt-buy").is_dir(), reason=f"benchmark data not found at {ROOT}")


def _counts(ds: PairDataset, split: str) -> tuple[int, int]:
    pairs = ds.split(split)
    return len(pairs), sum(p.label for p in pairs)


# --------------------------------------------------------------------------- data root


def test_data_root_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PRODUCTMATCH_DATA", raising=False)
    repo = Path(__file__).resolve().parents[3]
    assert data_root() == (repo.parent / "shared" / "data").resolve()
    monkeypatch.setenv("PRODUCTMATCH_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()


# --------------------------------------------------------------------------- shipped data


@pytest.fixture(scope="module")
def abt_dm() -> PairDataset:
    return load_dataset(ROOT / "abt-buy", "deepmatcher")


@pytest.fixture(scope="module")
def abt_ditto() -> PairDataset:
    return load_dataset(ROOT / "abt-buy" / "ditto", "ditto")


@needs_data
def test_abt_buy_deepmatcher(abt_dm: PairDataset) -> None:
    assert abt_dm.name == "abt-buy" and abt_dm.format == "deepmatcher"
    assert abt_dm.attributes == ["name", "description", "price"]
    assert _counts(abt_dm, "train") == (5743, 616)
    assert _counts(abt_dm, "valid") == (1916, 206)
    assert _counts(abt_dm, "test") == (1916, 206)
    assert abt_dm.left_table is not None and abt_dm.right_table is not None
    assert (len(abt_dm.left_table), len(abt_dm.right_table)) == (1081, 1092)
    # Empty cells are None: price is missing for 663 Abt and 502 Buy records.
    assert sum(r.fields["price"] is None for r in abt_dm.left_table.values()) == 663
    assert sum(r.fields["price"] is None for r in abt_dm.right_table.values()) == 502
    first = abt_dm.split("train")[0]
    assert (first.left.id, first.right.id, first.label) == ("730", "775", 0)
    assert first.left.source == "A" and first.right.source == "B"
    assert first.left is abt_dm.left_table["730"]  # pairs share the table records
    assert first.left.title == first.left.fields["name"]


@needs_data
def test_amazon_google_deepmatcher() -> None:
    ds = load_dataset("amazon-google", "deepmatcher")  # relative: resolved under data_root()
    assert ds.attributes == ["title", "manufacturer", "price"]
    assert _counts(ds, "train") == (6874, 699)
    assert _counts(ds, "valid") == (2293, 234)
    assert _counts(ds, "test") == (2293, 234)
    assert ds.left_table is not None and ds.right_table is not None
    assert (len(ds.left_table), len(ds.right_table)) == (1363, 3226)


@needs_data
def test_abt_buy_ditto_agrees_with_deepmatcher(abt_dm: PairDataset, abt_ditto: PairDataset) -> None:
    assert abt_ditto.name == "abt-buy" and abt_ditto.attributes == abt_dm.attributes
    raw_lines = (ROOT / "abt-buy" / "ditto" / "train.txt").read_text(encoding="utf-8").splitlines()
    for split in ("train", "valid", "test"):
        dm, dt = abt_dm.split(split), abt_ditto.split(split)
        assert len(dm) == len(dt)
        for a, b in zip(dm, dt, strict=True):
            assert a.label == b.label
            assert a.left.title == b.left.title and a.right.title == b.right.title
            assert a.left.fields == b.left.fields and a.right.fields == b.right.fields
    # serialize(..., "all") reproduces the shipped Ditto text byte for byte.
    for pair, line in zip(abt_dm.split("train"), raw_lines, strict=True):
        left, right, _ = line.split("\t")
        assert serialize(pair.left, "all") == left.strip()
        assert serialize(pair.right, "all") == right.strip()
    # Ditto ids are content hashes, so they are the same whichever reader produced the text.
    pair = abt_dm.split("test")[3]
    digest = hashlib.sha1(serialize(pair.left, "all").encode()).hexdigest()[:16]
    assert abt_ditto.split("test")[3].left.id == digest
    assert abt_ditto.split("test")[3].left.source == "left"


@needs_data
def test_wdc_lspc_computers() -> None:
    ds = read_ditto(ROOT / "wdc-lspc-v2" / "computers")  # size="medium"
    assert ds.name == "computers" and ds.attributes == ["title"]
    assert _counts(ds, "test") == (1098, 299)
    assert _counts(ds, "train") == (6332, 1378)
    assert _counts(ds, "valid") == (1567, 341)
    assert all(p.left.cluster_id is None for p in ds.split("test"))
    # Identical records share an id (and the Record object).
    assert ds.left_table is not None and len(ds.left_table) < sum(len(v) for v in ds.splits.values())

    small = read_ditto(ROOT / "wdc-lspc-v2" / "computers", size="small")
    assert _counts(small, "train") == (2231, 557)
    assert _counts(small, "valid") == (536, 149)


@needs_data
def test_wdc_lspc_size_fallback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="training.data.readers"):
        ds = read_ditto(ROOT / "wdc-lspc-v2" / "computers", size="xlarge")
    # No computers train.txt.xlarge: falls back to the largest train set there is (medium);
    # valid.txt.xlarge exists and is used as asked.
    assert _counts(ds, "train") == (6332, 1378)
    assert _counts(ds, "valid") == (13312, 1885)
    assert any("falling back" in r.getMessage() and "'medium'" in r.getMessage() for r in caplog.records)

    both = read_ditto(ROOT / "wdc-lspc-v2" / "all", size="medium")
    assert _counts(both, "train") == (7230, 1854)  # only train.txt.small exists
    assert _counts(both, "valid") == (5114, 1101)
    assert _counts(both, "test") == (4398, 1198)
    only_test = read_ditto(ROOT / "wdc-lspc-v2" / "all", size=None)
    assert list(only_test.splits) == ["test"]


@pytest.fixture(scope="module")
def wdc_products() -> PairDataset:
    return read_wdc_products(ROOT / "wdc-products-80cc20rnd")


@needs_data
def test_wdc_products(wdc_products: PairDataset) -> None:
    ds = wdc_products
    assert ds.attributes == ["brand", "title", "description", "price", "priceCurrency"]
    assert _counts(ds, "train") == (6000, 1500)
    assert _counts(ds, "valid") == (3500, 500)
    assert _counts(ds, "test") == (4500, 500)
    for pairs in ds.splits.values():
        for p in pairs:
            assert p.left.cluster_id is not None and p.right.cluster_id is not None
            assert p.pair_id == f"{p.left.id}#{p.right.id}"
            # cluster_id is the product id: a positive pair is one product.
            assert (p.left.cluster_id == p.right.cluster_id) == (p.label == 1)
    test_records = [r for p in ds.split("test") for r in (p.left, p.right)]
    brand_missing = sum(r.fields["brand"] is None for r in test_records) / len(test_records)
    assert 0.55 < brand_missing < 0.75  # README: about 65%
    assert ds.left_table is not None and ds.right_table is not None
    assert set(ds.left_table) == {p.left.id for v in ds.splits.values() for p in v}


@needs_data
def test_wdc_products_test_selection(wdc_products: PairDataset) -> None:
    train_products = {r.cluster_id for p in wdc_products.split("train") for r in (p.left, p.right)}
    positives: dict[str, set[str | None]] = {}
    pair_ids: dict[str, set[str | None]] = {}
    for test in ("000un", "050un", "100un"):
        ds = read_wdc_products(ROOT / "wdc-products-80cc20rnd", train_size=None, valid_size=None, test=test)
        assert list(ds.splits) == ["test"]
        assert _counts(ds, "test") == (4500, 500)
        positives[test] = {p.left.cluster_id for p in ds.split("test") if p.label == 1}
        pair_ids[test] = {p.pair_id for p in ds.split("test")}
    assert len(positives["000un"]) == 500
    assert positives["100un"].isdisjoint(train_products)  # 100% unseen products
    assert len(positives["000un"] & train_products) > 450  # seen (train_medium holds most of them)
    assert len({frozenset(v) for v in pair_ids.values()}) == 3
    # Documented quirk: 33 pairs of 050un_gs are also in train_medium.
    assert len(pair_ids["050un"] & {p.pair_id for p in wdc_products.split("train")}) == 33


@needs_data
def test_wdc_block() -> None:
    ds = load_dataset(ROOT / "wdc-block-small", "wdc-block")
    assert ds.format == "wdc-block"
    assert ds.attributes == ["brand", "title", "description", "price", "pricecurrency"]  # no page_url
    assert _counts(ds, "test") == (4500, 500)
    assert _counts(ds, "train") == (16956, 6454)
    assert _counts(ds, "valid") == (8476, 3226)
    assert ds.left_table is not None and ds.right_table is not None
    assert (len(ds.left_table), len(ds.right_table)) == (5000, 5000)
    assert all(r.cluster_id is not None for r in [*ds.left_table.values(), *ds.right_table.values()])
    assert all("page_url" not in r.fields and "cluster_id" not in r.fields for r in ds.left_table.values())
    assert all(p.pair_id for p in ds.split("test"))


@needs_data
def test_wdc_block_cluster_id_sources() -> None:
    # What the data shows (see the report): the tables' cluster_id column equals the split files'
    # renumbered ids of train/valid, while the test split carries the original WDC cluster ids,
    # which agree with the labels. cluster_ids="split" exposes the latter.
    table = read_wdc_block(ROOT / "wdc-block-small")
    split = read_wdc_block(ROOT / "wdc-block-small", cluster_ids="split")
    for t, s in zip(table.split("train"), split.split("train"), strict=True):
        assert t.left.cluster_id == s.left.cluster_id and t.right.cluster_id == s.right.cluster_id

    def consistent(ds: PairDataset) -> int:
        return sum((p.left.cluster_id == p.right.cluster_id) == (p.label == 1) for p in ds.split("test"))

    assert consistent(split) == 4500
    assert consistent(table) < 4500
    # The split variant copies records; the tables themselves are unchanged.
    assert split.left_table == table.left_table


# --------------------------------------------------------------------------- any folder


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_tiny_deepmatcher_folder(tmp_path: Path) -> None:
    header = ["id", "title", "brand", "price"]
    _write_csv(
        tmp_path / "tableA.csv",
        header,
        [[10, "Apple iPhone 12, 64 GB", "apple", ""], [11, "Pixel 5", "", "699"]],
    )
    _write_csv(tmp_path / "tableB.csv", header, [[0, 'iphone 12 "64gb"', "Apple", "799.0"], [1, "ünïcödé", "", ""]])
    _write_csv(tmp_path / "train.csv", ["ltable_id", "rtable_id", "label"], [[10, 0, 1], [11, 1, 0], [11, 0, 0]])
    _write_csv(tmp_path / "test.csv", ["ltable_id", "rtable_id", "label"], [[10, 1, 0]])  # no valid.csv

    ds = read_deepmatcher(tmp_path)
    assert list(ds.splits) == ["train", "test"]
    assert ds.attributes == ["title", "brand", "price"]
    pair = ds.split("train")[0]
    assert pair.left == Record(
        id="10", fields={"title": "Apple iPhone 12, 64 GB", "brand": "apple", "price": None}, source="A"
    )
    assert pair.right.fields["title"] == 'iphone 12 "64gb"' and pair.label == 1
    assert ds.split("test")[0].right.fields == {"title": "ünïcödé", "brand": None, "price": None}
    with pytest.raises(KeyError, match="available splits: train, test"):
        ds.split("valid")


def test_tiny_wdc_block_folder(tmp_path: Path) -> None:
    header = ["id", "brand", "title", "description", "price", "cluster_id", "pricecurrency", "page_url"]
    _write_csv(
        tmp_path / "tableA.csv",
        header,
        [[0, "", "Jabra Evolve 75", "line1\nline2", "219", 7, "", "http://x"]],
    )
    _write_csv(tmp_path / "tableB.csv", header, [[0, "Jabra", "Evolve 75 UC", "", "", 7, "EUR", ""]])
    split_header = ["ltable_id", "rtable_id", "label", "cluster_id_left", "cluster_id_right", "pair_id"]
    _write_csv(tmp_path / "test.csv", split_header, [[0, 0, 1, 900, 900, "1#2"]])

    ds = load_dataset(tmp_path, "wdc_block")  # underscores accepted
    pair = ds.split("test")[0]
    assert "page_url" not in ds.attributes and pair.pair_id == "1#2"
    assert pair.left.cluster_id == "7"  # table column preferred
    assert pair.left.fields["description"] == "line1\nline2"
    assert read_wdc_block(tmp_path, cluster_ids="split").split("test")[0].left.cluster_id == "900"

    # Without a table cluster column, the split files' ids are used.
    plain = tmp_path / "plain"
    plain.mkdir()
    _write_csv(plain / "tableA.csv", ["id", "title"], [[0, "a"]])
    _write_csv(plain / "tableB.csv", ["id", "title"], [[0, "b"]])
    _write_csv(plain / "train.csv", split_header[:5], [[0, 0, 0, 5, 6]])
    pair = read_deepmatcher(plain).split("train")[0]
    assert (pair.left.cluster_id, pair.right.cluster_id, pair.pair_id) == ("5", "6", None)


def test_tiny_ditto_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = "COL title VAL canon eos 5d COL price VAL "
    b = "COL title VAL  Canon EOS-5D body COL price VAL 1999.0"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.txt").write_text(f"{a}\t{b}\t1\n{b}\t{a}\t0\n\n", encoding="utf-8")
    (plain / "test.txt").write_text(f"{a}\t{a}\t1\n", encoding="utf-8")
    ds = read_ditto(plain)
    assert list(ds.splits) == ["train", "test"] and ds.attributes == ["title", "price"]
    first = ds.split("train")[0]
    assert first.left.fields == {"title": "canon eos 5d", "price": None}
    assert first.right.fields == {"title": "Canon EOS-5D body", "price": "1999.0"}
    # Same text -> same id, wherever it appears.
    assert first.left.id == ds.split("train")[1].right.id == ds.split("test")[0].right.id

    sized = tmp_path / "sized"
    sized.mkdir()
    for name, n in [("train.txt.small", 1), ("train.txt.large", 3), ("valid.txt.small", 2), ("test.txt", 1)]:
        (sized / name).write_text(f"{a}\t{b}\t1\n" * n, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="training.data.readers"):
        ds = read_ditto(sized, size="medium")
    assert [len(ds.split(s)) for s in ("train", "valid", "test")] == [3, 2, 1]  # large, small (only one)
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 2
    assert len(read_ditto(sized, size="small").split("train")) == 1
    # valid_size defaults to size; it can be set on its own.
    assert len(read_ditto(sized, size="large", valid_size="small").split("valid")) == 2

    single = read_ditto(sized / "test.txt")
    assert list(single.splits) == ["test"]
    # Records with different attribute sets get the union schema, missing = None.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "test.txt").write_text("COL title VAL x\tCOL brand VAL y COL title VAL z\t0\n", encoding="utf-8")
    ds = read_ditto(mixed)
    assert ds.attributes == ["title", "brand"]
    assert ds.split("test")[0].left.fields == {"title": "x", "brand": None}


def _wdc_row(left: int, right: int, label: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {}
    for side, rid in (("left", left), ("right", right)):
        row.update(
            {
                f"id_{side}": rid,
                f"brand_{side}": None,
                f"title_{side}": f"product {rid}",
                f"description_{side}": "desc" if rid % 2 else None,
                f"price_{side}": "9.99",
                f"priceCurrency_{side}": None,
                f"cluster_id_{side}": rid // 10,
            }
        )
    row.update({"pair_id": f"{left}#{right}", "label": label, "is_hard_negative": False, **extra})
    return row


def _write_jsonl_gz(path: Path, rows: list[dict[str, object]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def test_tiny_wdc_products_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_jsonl_gz(tmp_path / "myshop_train_small.json.gz", [_wdc_row(10, 11, 1), _wdc_row(10, 21, 0)])
    _write_jsonl_gz(tmp_path / "myshop_train_large.json.gz", [_wdc_row(10, 11, 1)] * 3)
    _write_jsonl_gz(tmp_path / "myshop_valid_medium.json.gz", [_wdc_row(30, 31, 1)])
    _write_jsonl_gz(tmp_path / "myshopXYZ_gs.json.gz", [_wdc_row(40, 51, 0)])

    with caplog.at_level(logging.WARNING, logger="training.data.readers"):
        ds = read_wdc_products(tmp_path, test="XYZ")  # train medium missing -> large
    assert [len(ds.split(s)) for s in ("train", "valid", "test")] == [3, 1, 1]
    assert any("falling back" in r.getMessage() for r in caplog.records)
    ds = load_dataset(tmp_path, "wdc-products", train_size="small", test="XYZ")
    pair = ds.split("train")[0]
    assert pair.left.id == "10" and pair.left.cluster_id == "1" and pair.left.source == "left"
    assert pair.left.fields == {
        "brand": None,
        "title": "product 10",
        "description": None,
        "price": "9.99",
        "priceCurrency": None,
    }
    assert pair.pair_id == "10#11" and pair.label == 1
    assert ds.split("train")[1].left is pair.left  # deduplicated by offer id
    assert ds.left_table is not None and set(ds.left_table) == {"10", "30", "40"}
    with pytest.raises(FileNotFoundError, match="000un_gs"):
        read_wdc_products(tmp_path)  # default test "000un" is not in this folder


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_content_sensitive() -> None:
    a = Record(id="1", fields={"title": "x"}, source="A")
    b = Record(id="2", fields={"title": "y"}, source="B")

    def make(label: int, title: str = "y") -> PairDataset:
        right = Record(id="2", fields={"title": title}, source="B")
        return PairDataset("t", "deepmatcher", {"train": [Pair(a, right, label)], "test": [Pair(a, b, 0)]})

    assert make(1).fingerprint() == make(1).fingerprint()
    assert len(make(1).fingerprint()) == 64
    assert make(1).fingerprint() != make(0).fingerprint()
    assert make(1).fingerprint() != make(1, title="z").fingerprint()


@needs_data
def test_fingerprint_of_shipped_data_is_reproducible(abt_dm: PairDataset) -> None:
    assert load_dataset(ROOT / "abt-buy", "deepmatcher").fingerprint() == abt_dm.fingerprint()


# --------------------------------------------------------------------------- errors


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset format 'parquet'.*deepmatcher"):
        load_dataset(tmp_path, "parquet")


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nope", "deepmatcher")
    _write_csv(tmp_path / "tableA.csv", ["id", "title"], [[0, "a"]])
    with pytest.raises(FileNotFoundError, match="tableB.csv"):
        load_dataset(tmp_path, "deepmatcher")
    _write_csv(tmp_path / "tableB.csv", ["id", "title"], [[0, "a"]])
    with pytest.raises(FileNotFoundError, match="train.csv"):
        load_dataset(tmp_path, "deepmatcher")
    with pytest.raises(FileNotFoundError, match="train.txt"):
        load_dataset(tmp_path, "ditto")
    with pytest.raises(FileNotFoundError, match="json.gz"):
        load_dataset(tmp_path, "wdc-products")
    with pytest.raises(FileNotFoundError, match="tableA.csv"):
        load_dataset(tmp_path / "tableA.csv", "wdc-block")  # a file, not a folder


def test_bad_rows_are_reported_with_location(tmp_path: Path) -> None:
    _write_csv(tmp_path / "tableA.csv", ["id", "title"], [[0, "a"]])
    _write_csv(tmp_path / "tableB.csv", ["id", "title"], [[0, "b"]])
    _write_csv(tmp_path / "train.csv", ["ltable_id", "rtable_id", "label"], [[0, 0, 1], [0, 5, 0]])
    with pytest.raises(ValueError, match=r"train.csv:3.*does not resolve"):
        read_deepmatcher(tmp_path)
    _write_csv(tmp_path / "train.csv", ["ltable_id", "rtable_id", "label"], [[0, 0, "yes"]])
    with pytest.raises(ValueError, match="not 0/1"):
        read_deepmatcher(tmp_path)
    (tmp_path / "test.txt").write_text("COL title VAL a\tCOL title VAL b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test.txt:1"):
        read_ditto(tmp_path)
