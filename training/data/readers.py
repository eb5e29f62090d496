"""Readers for the product-matching benchmark formats (see ``shared/data/README.md``).

Every reader takes any folder laid out in its format (not only the shipped ones) and returns a
:class:`~training.data.records.PairDataset`.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from models.product_text import ditto_items, join_ditto
from training.data.records import SPLIT_NAMES, Pair, PairDataset, Record, table_from_records

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("deepmatcher", "ditto", "wdc-products", "wdc-block")

#: Size suffixes of the WDC training sets, smallest first (used to pick the "largest available").
SIZE_ORDER: tuple[str, ...] = ("small", "medium", "large", "xlarge")

#: Attributes of the WDC Products JSON files, in schema order.
WDC_PRODUCTS_ATTRIBUTES: tuple[str, ...] = ("brand", "title", "description", "price", "priceCurrency")

# Table columns that identify a record rather than describe it.
_ID_COLUMN = "id"
_CLUSTER_COLUMN = "cluster_id"


# --------------------------------------------------------------------------- locations


def data_root() -> Path:
    """``$PRODUCTMATCH_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("PRODUCTMATCH_DATA")
    if env:
        return Path(env).expanduser().resolve()
    repo_root = Path(__file__).resolve().parents[2]  # training/data/readers.py -> repo root
    return (repo_root.parent / "shared" / "data").resolve()


def _resolve_path(path: str | os.PathLike[str]) -> Path:
    # A relative path that does not exist from the cwd is looked up under the data root, so
    # load_dataset("abt-buy", "deepmatcher") works from anywhere.
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and (data_root() / p).exists():
        return data_root() / p
    return p


def _dataset_name(folder: Path) -> str:
    # "abt-buy/ditto" is Abt-Buy, not "ditto".
    name = folder.name
    if name == "ditto" and folder.parent.name:
        return folder.parent.name
    return name


def _require_dir(folder: Path, fmt: str, expected: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{fmt}: {folder} is not a folder (expected a folder with {expected})")


# --------------------------------------------------------------------------- small helpers


def _cell(value: object) -> str | None:
    # Empty and whitespace-only cells are missing values; csv gives None for short rows.
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _label(raw: object, where: str) -> int:
    try:
        label = int(float(str(raw).strip()))
    except ValueError:
        raise ValueError(f"{where}: label {raw!r} is not 0/1") from None
    if label not in (0, 1):
        raise ValueError(f"{where}: label {raw!r} is not 0/1")
    return label


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str | None]]]:
    # utf-8-sig: tolerate a BOM (spreadsheet exports), which would otherwise rename the first column.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        if not header:
            raise ValueError(f"{path}: empty CSV (no header)")
        reader.fieldnames = header
        return header, list(reader)


def _pick_sized(
    candidates: dict[str, Path], size: str | None, what: str, folder: Path, plain: Path | None = None
) -> Path | None:
    """Choose ``candidates[size]``; else ``plain`` (an unsized file); else the largest available size.

    ``size=None`` means "skip this split".
    """
    if size is None:
        return None
    if size in candidates:
        return candidates[size]
    if plain is not None:
        return plain
    if not candidates:
        return None

    def rank(name: str) -> tuple[int, str]:
        # Unknown size names rank below the known ones (ties broken by name for determinism).
        return (SIZE_ORDER.index(name) if name in SIZE_ORDER else -1, name)

    chosen = max(candidates, key=rank)
    logger.warning(
        "%s: no %s of size %r in %s; falling back to the largest available, %r (available: %s)",
        _dataset_name(folder),
        what,
        size,
        folder,
        chosen,
        ", ".join(sorted(candidates, key=rank)),
    )
    return candidates[chosen]


# --------------------------------------------------------------------------- DeepMatcher / WDC Block


def _read_table(path: Path, source: str, exclude: Sequence[str]) -> tuple[dict[str, Record], list[str], bool]:
    """Read ``tableA/B.csv``: (records by id, attribute columns, has a cluster_id column)."""
    header, rows = _read_csv(path)
    if _ID_COLUMN not in header:
        raise ValueError(f"{path}: no {_ID_COLUMN!r} column (header: {header})")
    skip = {_ID_COLUMN, _CLUSTER_COLUMN, *exclude}
    attributes = [col for col in header if col not in skip]
    has_cluster = _CLUSTER_COLUMN in header
    table: dict[str, Record] = {}
    duplicates = 0
    for row in rows:
        rid = (row.get(_ID_COLUMN) or "").strip()
        if not rid:
            raise ValueError(f"{path}: row without an id: {row}")
        if rid in table:
            duplicates += 1
            continue
        cluster = _cell(row.get(_CLUSTER_COLUMN)) if has_cluster else None
        table[rid] = Record(
            id=rid,
            fields={attr: _cell(row.get(attr)) for attr in attributes},
            cluster_id=cluster.strip() if cluster else None,
            source=source,
        )
    if duplicates:
        logger.warning("%s: %d duplicate ids; kept the first row of each", path, duplicates)
    return table, attributes, has_cluster


def _merge_schemas(left: list[str], right: list[str], folder: Path) -> list[str]:
    if left != right:
        logger.warning("%s: tableA and tableB schemas differ (%s vs %s); using their union", folder, left, right)
    return left + [attr for attr in right if attr not in left]


def _split_record(
    record: Record, split_cluster: str | None, use_split: bool, cache: dict[tuple[str, str], Record]
) -> Record:
    # A copy of the table record carrying the split file's cluster id; cached so every pair that
    # mentions the same (record, cluster) shares one object.
    if not use_split or not split_cluster or split_cluster == record.cluster_id:
        return record
    key = (record.id, split_cluster)
    copy = cache.get(key)
    if copy is None:
        copy = dataclasses.replace(record, cluster_id=split_cluster)
        cache[key] = copy
    return copy


def _read_dm_split(
    path: Path,
    left_table: dict[str, Record],
    right_table: dict[str, Record],
    use_split_left: bool,
    use_split_right: bool,
) -> list[Pair]:
    header, rows = _read_csv(path)
    missing = [c for c in ("ltable_id", "rtable_id", "label") if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (header: {header})")
    has_pair_id = "pair_id" in header
    cache_left: dict[tuple[str, str], Record] = {}
    cache_right: dict[tuple[str, str], Record] = {}
    pairs: list[Pair] = []
    for line_no, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path}:{line_no}"
        lid, rid = (row.get("ltable_id") or "").strip(), (row.get("rtable_id") or "").strip()
        try:
            left, right = left_table[lid], right_table[rid]
        except KeyError:
            raise ValueError(f"{where}: id pair ({lid!r}, {rid!r}) does not resolve in tableA/tableB") from None
        left = _split_record(left, _cell(row.get("cluster_id_left")), use_split_left, cache_left)
        right = _split_record(right, _cell(row.get("cluster_id_right")), use_split_right, cache_right)
        pair_id = _cell(row.get("pair_id")) if has_pair_id else None
        pairs.append(Pair(left=left, right=right, label=_label(row.get("label"), where), pair_id=pair_id))
    return pairs


def read_deepmatcher(
    folder: str | os.PathLike[str],
    *,
    exclude: Sequence[str] = (),
    cluster_ids: str = "table",
    fmt: str = "deepmatcher",
) -> PairDataset:
    """Read a DeepMatcher folder: ``tableA.csv``, ``tableB.csv`` and any of ``train/valid/test.csv``.

    ``id`` and ``cluster_id`` columns (and any ``exclude`` columns) are not attributes. Cluster ids:
    with ``cluster_ids="table"`` (default) records take the tables' ``cluster_id`` column and the
    split files' ``cluster_id_left/right`` are used only where a table has no such column; with
    ``cluster_ids="split"`` each pair's records carry the ids of the split file (copies of the
    table records, so one record id may then carry different cluster ids in different splits).
    """
    if cluster_ids not in ("table", "split"):
        raise ValueError(f"cluster_ids must be 'table' or 'split', got {cluster_ids!r}")
    root = _resolve_path(folder)
    expected = "tableA.csv, tableB.csv and at least one of train.csv, valid.csv, test.csv"
    _require_dir(root, fmt, expected)
    missing = [name for name in ("tableA.csv", "tableB.csv") if not (root / name).is_file()]
    split_files = {name: root / f"{name}.csv" for name in SPLIT_NAMES if (root / f"{name}.csv").is_file()}
    if missing or not split_files:
        lacking = ", ".join(missing) if missing else "train.csv/valid.csv/test.csv"
        raise FileNotFoundError(f"{fmt}: {root} lacks {lacking} (expected {expected})")

    left_table, left_attrs, left_has_cluster = _read_table(root / "tableA.csv", "A", exclude)
    right_table, right_attrs, right_has_cluster = _read_table(root / "tableB.csv", "B", exclude)
    attributes = _merge_schemas(left_attrs, right_attrs, root)
    use_split_left = cluster_ids == "split" or not left_has_cluster
    use_split_right = cluster_ids == "split" or not right_has_cluster

    splits: dict[str, list[Pair]] = {}
    for name, path in split_files.items():
        splits[name] = _read_dm_split(path, left_table, right_table, use_split_left, use_split_right)
    dataset = PairDataset(
        name=_dataset_name(root),
        format=fmt,
        splits=splits,
        left_table=left_table,
        right_table=right_table,
        attributes=attributes,
    )
    logger.info("read %s %s: %s", fmt, root, dataset.stats())
    return dataset


def read_wdc_block(folder: str | os.PathLike[str], *, cluster_ids: str = "table") -> PairDataset:
    """Read WDC Block: DeepMatcher-style CSVs with ``cluster_id``/``page_url`` table columns.

    ``page_url`` is kept out of the attributes (it is a link, not a description). See
    :func:`read_deepmatcher` for ``cluster_ids``.
    """
    return read_deepmatcher(folder, exclude=("page_url",), cluster_ids=cluster_ids, fmt="wdc-block")


# --------------------------------------------------------------------------- Ditto


def _ditto_record(text: str, source: str, cache: dict[str, Record], where: str, schema: dict[str, None]) -> Record:
    items = ditto_items(text)
    if items is None:
        raise ValueError(f"{where}: not a Ditto record ('COL <attr> VAL ...'): {text[:80]!r}")
    # Canonical text (whitespace-normalised) so the same record always hashes to the same id.
    canonical = join_ditto(items)
    rid = hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]
    record = cache.get(rid)
    if record is None:
        fields: dict[str, str | None] = {}
        for attr, value in items:
            fields[attr] = value or None
            schema.setdefault(attr, None)
        record = Record(id=rid, fields=fields, source=source)
        cache[rid] = record
    return record


def _read_ditto_file(
    path: Path,
    caches: tuple[dict[str, Record], dict[str, Record]],
    schema: dict[str, None],
) -> list[Pair]:
    pairs: list[Pair] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{where}: expected '<left>\\t<right>\\t<label>', got {len(parts)} fields")
            left = _ditto_record(parts[0], "left", caches[0], where, schema)
            right = _ditto_record(parts[1], "right", caches[1], where, schema)
            pairs.append(Pair(left=left, right=right, label=_label(parts[2], where)))
    return pairs


def _ditto_files(root: Path, size: str | None, valid_size: str | None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    # The test set is never skipped: a sized test file of the asked size wins, then test.txt.
    for split, wanted in (("train", size), ("valid", valid_size), ("test", size or "")):
        plain = root / f"{split}.txt"
        sized = {
            p.name[len(f"{split}.txt.") :]: p
            for p in sorted(root.glob(f"{split}.txt.*"))
            if p.is_file() and len(p.name) > len(f"{split}.txt.")
        }
        chosen = _pick_sized(sized, wanted, f"{split} set", root, plain if plain.is_file() else None)
        if chosen is not None:
            files[split] = chosen
    return files


def _split_of_file(path: Path) -> str:
    for split in SPLIT_NAMES:
        if path.name.startswith(split):
            return split
    raise ValueError(f"cannot tell the split of {path.name!r}; pass split='train'|'valid'|'test'")


def read_ditto(
    folder_or_file: str | os.PathLike[str],
    size: str | None = "medium",
    *,
    valid_size: str | None = None,
    split: str | None = None,
) -> PairDataset:
    """Read Ditto txt files (``<left>\\t<right>\\t<label>`` per line).

    Folder layouts: ``train.txt/valid.txt/test.txt``, or WDC LSPC ``train.txt.<size>``,
    ``valid.txt.<size>``, ``test.txt``. ``size`` picks the train size (and the valid size unless
    ``valid_size`` is given); a missing size falls back, with a warning, to the largest available.
    ``None`` skips that split. A single file goes into ``split`` (default: from its name).

    Ditto has no ids: a record's id is the first 16 hex chars of the sha1 of its canonical
    serialisation, so identical records share an id (and one ``Record`` object).
    """
    path = _resolve_path(folder_or_file)
    if path.is_file():
        files = {split or _split_of_file(path): path}
        root = path.parent
    else:
        expected = "train.txt/valid.txt/test.txt or train.txt.<size>/valid.txt.<size>/test.txt"
        _require_dir(path, "ditto", expected)
        root = path
        files = _ditto_files(root, size, size if valid_size is None else valid_size)
        if not files:
            raise FileNotFoundError(f"ditto: {root} has no Ditto split files (expected {expected})")

    caches: tuple[dict[str, Record], dict[str, Record]] = ({}, {})
    schema: dict[str, None] = {}
    splits = {name: _read_ditto_file(p, caches, schema) for name, p in files.items()}
    attributes = list(schema)
    # Records may list different attributes; give every record the full schema (missing = None)
    # so that serialize(record, "all") is well defined across the dataset.
    if any(list(r.fields) != attributes for cache in caches for r in cache.values()):
        splits, caches = _fill_schema(splits, attributes)
    dataset = PairDataset(
        name=_dataset_name(root),
        format="ditto",
        splits=splits,
        left_table=dict(caches[0]),
        right_table=dict(caches[1]),
        attributes=attributes,
    )
    logger.info("read ditto %s (%s): %s", root, {k: v.name for k, v in files.items()}, dataset.stats())
    return dataset


def _fill_schema(
    splits: dict[str, list[Pair]], attributes: list[str]
) -> tuple[dict[str, list[Pair]], tuple[dict[str, Record], dict[str, Record]]]:
    filled: dict[int, Record] = {}

    def fill(record: Record) -> Record:
        new = filled.get(id(record))
        if new is None:
            fields = {attr: record.fields.get(attr) for attr in attributes}
            new = dataclasses.replace(record, fields=fields)
            filled[id(record)] = new
        return new

    new_splits = {
        name: [dataclasses.replace(p, left=fill(p.left), right=fill(p.right)) for p in pairs]
        for name, pairs in splits.items()
    }
    left = table_from_records(p.left for pairs in new_splits.values() for p in pairs)
    right = table_from_records(p.right for pairs in new_splits.values() for p in pairs)
    return new_splits, (left, right)


# --------------------------------------------------------------------------- WDC Products


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _glob_one(root: Path, patterns: Sequence[str], what: str) -> Path | None:
    matches = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise ValueError(f"wdc-products: several files match the {what} in {root}: {names}")
    return matches[0] if matches else None


def _wdc_sized(root: Path, kind: str) -> dict[str, Path]:
    # "<prefix>_train_<size>.json.gz" -> {size: path}; the prefix is not hard-coded.
    found: dict[str, Path] = {}
    for p in sorted(root.glob(f"*_{kind}_*.json*")):
        stem = p.name.split(".json")[0]
        size = stem.rsplit(f"_{kind}_", 1)[-1]
        if p.is_file() and size and size not in found:
            found[size] = p
    return found


def _wdc_files(root: Path, train_size: str | None, valid_size: str | None, test: str | None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for split, size in (("train", train_size), ("valid", valid_size)):
        if size is None:
            continue
        exact = _glob_one(root, [f"*_{split}_{size}.json.gz", f"*_{split}_{size}.json"], f"{split} {size}")
        chosen = exact or _pick_sized(_wdc_sized(root, split), size, f"{split} set", root)
        if chosen is None:
            logger.warning("wdc-products: no %s file in %s; split skipped", split, root)
        else:
            files[split] = chosen
    if test is not None:
        chosen = _glob_one(root, [f"*{test}_gs.json.gz", f"*{test}_gs.json"], f"test set {test!r}")
        if chosen is None:
            available = sorted(p.name for p in root.glob("*_gs.json*"))
            raise FileNotFoundError(
                f"wdc-products: no test file matching '*{test}_gs.json.gz' in {root} (found: {available})"
            )
        files["test"] = chosen
    return files


def _wdc_side(row: dict[str, Any], side: str, cache: dict[str, Record], where: str, conflicts: list[str]) -> Record:
    raw_id = row.get(f"id_{side}")
    if raw_id is None:
        raise ValueError(f"{where}: no id_{side}")
    rid = str(raw_id)
    fields = {attr: _cell(row.get(f"{attr}_{side}")) for attr in WDC_PRODUCTS_ATTRIBUTES}
    cluster = row.get(f"cluster_id_{side}")
    cluster_id = None if cluster is None else str(cluster)
    record = cache.get(rid)
    if record is None:
        record = Record(id=rid, fields=fields, cluster_id=cluster_id, source=side)
        cache[rid] = record
    elif record.fields != fields or record.cluster_id != cluster_id:
        # One offer id must mean one record across all files; keep the first and report.
        conflicts.append(where)
    return record


def _read_wdc_file(path: Path, caches: tuple[dict[str, Record], dict[str, Record]]) -> list[Pair]:
    pairs: list[Pair] = []
    conflicts: list[str] = []
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc})") from None
            left = _wdc_side(row, "left", caches[0], where, conflicts)
            right = _wdc_side(row, "right", caches[1], where, conflicts)
            pair_id = row.get("pair_id")
            pairs.append(
                Pair(
                    left=left,
                    right=right,
                    label=_label(row.get("label"), where),
                    pair_id=str(pair_id) if pair_id is not None else f"{left.id}#{right.id}",
                )
            )
    if conflicts:
        logger.warning(
            "%s: %d offers repeat an earlier id with different content (first at %s); kept the first",
            path,
            len(conflicts),
            conflicts[0],
        )
    return pairs


def read_wdc_products(
    folder: str | os.PathLike[str],
    train_size: str | None = "medium",
    valid_size: str | None = "medium",
    test: str | None = "000un",
) -> PairDataset:
    """Read WDC Products gzipped JSON-lines pair files.

    Files are found by pattern: ``*_train_<train_size>.json.gz``, ``*_valid_<valid_size>.json.gz``
    and ``*<test>_gs.json.gz``. A missing train/valid size falls back, with a warning, to the
    largest available; a missing test set is an error. ``None`` skips that split. Records are
    embedded in the pairs; the tables are built from them, deduplicated by offer id.
    """
    root = _resolve_path(folder)
    expected = "*_train_<size>.json.gz, *_valid_<size>.json.gz, *<test>_gs.json.gz"
    _require_dir(root, "wdc-products", expected)
    if not any(root.glob("*.json*")):
        raise FileNotFoundError(f"wdc-products: {root} has no pair files (expected {expected})")
    files = _wdc_files(root, train_size, valid_size, test)
    if not files:
        raise FileNotFoundError(f"wdc-products: no split selected or found in {root} (expected {expected})")
    caches: tuple[dict[str, Record], dict[str, Record]] = ({}, {})
    splits = {name: _read_wdc_file(path, caches) for name, path in files.items()}
    dataset = PairDataset(
        name=_dataset_name(root),
        format="wdc-products",
        splits=splits,
        left_table=dict(caches[0]),
        right_table=dict(caches[1]),
        attributes=list(WDC_PRODUCTS_ATTRIBUTES),
    )
    logger.info("read wdc-products %s (%s): %s", root, {k: v.name for k, v in files.items()}, dataset.stats())
    return dataset


# --------------------------------------------------------------------------- dispatch

_READERS: dict[str, Callable[..., PairDataset]] = {
    "deepmatcher": read_deepmatcher,
    "ditto": read_ditto,
    "wdc-products": read_wdc_products,
    "wdc-block": read_wdc_block,
}


def load_dataset(path: str | os.PathLike[str], fmt: str, **kwargs: Any) -> PairDataset:
    """Read ``path`` with the reader of ``fmt`` (one of :data:`FORMATS`); kwargs go to the reader.

    A relative ``path`` that does not exist from the working directory is looked up under
    :func:`data_root`.
    """
    key = fmt.strip().lower().replace("_", "-")
    reader = _READERS.get(key)
    if reader is None:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    resolved = _resolve_path(path)
    if not resolved.exists():
        raise FileNotFoundError(f"{key}: {resolved} does not exist")
    return reader(resolved, **kwargs)
