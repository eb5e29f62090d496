"""Index files: identical answers after reload (R3), refusal of damaged or foreign files (R5)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.search import IndexCorrupt, IndexFormatError, IndexParams, VectorIndex, persistence
from tests.app.search import catalogue, queries_near, unit

DIM = 32
VARIANTS = {
    "flat": (IndexParams(kind="flat"), 1500),
    "hnsw": (IndexParams(kind="hnsw", hnsw_m=16, hnsw_ef_construction=64), 1500),
    "ivfpq": (IndexParams(kind="ivfpq", ivf_min_train=256), 1500),
    "ivfpq-untrained": (IndexParams(kind="ivfpq"), 300),
}


@pytest.fixture(autouse=True, scope="module")
def _one_faiss_thread() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module", params=list(VARIANTS))
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[VectorIndex, Path]:
    """An index with replaced and removed products (tombstones for label kinds), saved once."""
    params, n = VARIANTS[request.param]
    ids, vectors, brands, cats = catalogue(n, DIM)
    index = VectorIndex(DIM, params)
    index.rebuild(ids, vectors, brands, cats, version=3)
    moved = unit(np.random.default_rng(2).standard_normal((20, DIM)))
    index.upsert(ids[:20], moved, brands[:20], ["tv"] * 20, version=4)
    index.remove(ids[20:40], version=5)
    path = tmp_path_factory.mktemp(request.param) / "products.pmindex"
    index.save(path)
    return index, path


def _queries() -> np.ndarray:
    return queries_near(catalogue(300, DIM)[1], 40, seed=5)


def test_reload_gives_identical_ids_scores_and_version(saved: tuple[VectorIndex, Path]) -> None:
    index, path = saved
    loaded = VectorIndex.load(path)
    queries = _queries()
    for kwargs in ({}, {"brand": "acme"}, {"category": "TV"}, {"brand": "Hooli", "category": "audio"}):
        before, after = index.search(queries, 10, **kwargs), loaded.search(queries, 10, **kwargs)
        assert after.ids == before.ids, kwargs
        assert after.scores == before.scores, kwargs
    assert loaded.version == index.version == 5
    assert len(loaded) == len(index)
    assert np.array_equal(loaded.ids(), index.ids())
    assert loaded.stats() == index.stats()
    assert loaded.params == index.params and loaded.dim == DIM


def test_loaded_index_keeps_accepting_writes(saved: tuple[VectorIndex, Path]) -> None:
    _, path = saved
    loaded = VectorIndex.load(path)
    fresh = unit(np.random.default_rng(8).standard_normal((3, DIM)))
    loaded.upsert(np.array([1, 2, 3]), fresh, ["Zed", None, None], [None, None, None], version=6)
    loaded.remove(loaded.ids()[-5:], version=7)
    assert loaded.search(fresh, 1).ids == [[1], [2], [3]]
    assert loaded.search(fresh, 5, brand="zed").ids[0] == [1]
    assert loaded.version == 7


def test_save_replaces_atomically_and_leaves_no_temp_files(
    saved: tuple[VectorIndex, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, _ = saved
    target = tmp_path / "idx.pmindex"
    index.save(target)
    index.save(target)  # overwrite in place
    good = target.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(persistence.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        index.save(target)
    monkeypatch.undo()
    assert target.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["idx.pmindex"]
    assert VectorIndex.load(target).version == index.version


def test_header_records_what_was_saved(saved: tuple[VectorIndex, Path]) -> None:
    index, path = saved
    header, sections = persistence.read_index_file(path)
    assert header["format_version"] == persistence.FORMAT_VERSION
    assert header["version"] == 5 and header["live"] == len(index) and header["dim"] == DIM
    assert IndexParams.from_dict(header["params"]) == index.params
    assert set(sections) == {"faiss_index", "slot_pid", "brand", "category", "live"}
    assert "acme" in header["attributes"]["brand_values"]


# -- damaged and foreign files ----------------------------------------------------------------------


def _flip(path: Path, offset: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    out = path.with_name(f"flipped-{offset}-{path.name}")
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("where", ["payload-start", "payload-end", "header"])
def test_flipped_byte_is_refused_as_corrupt(saved: tuple[VectorIndex, Path], where: str) -> None:
    _, path = saved
    size = path.stat().st_size
    offset = {"payload-start": size - 10_000, "payload-end": size - 3, "header": 60}[where]
    with pytest.raises(IndexCorrupt, match="checksum"):
        VectorIndex.load(_flip(path, offset))


def test_truncated_file_is_refused_as_corrupt(saved: tuple[VectorIndex, Path], tmp_path: Path) -> None:
    _, path = saved
    for keep in (20, path.stat().st_size // 2, path.stat().st_size - 1):
        short = tmp_path / f"short-{keep}.pmindex"
        short.write_bytes(path.read_bytes()[:keep])
        with pytest.raises(IndexCorrupt):
            VectorIndex.load(short)


def test_wrong_magic_names_both(saved: tuple[VectorIndex, Path], tmp_path: Path) -> None:
    _, path = saved
    other = tmp_path / "other.bin"
    other.write_bytes(b"NOTANIDX" + path.read_bytes()[8:])
    with pytest.raises(IndexFormatError, match="NOTANIDX.*PMVECIDX"):
        VectorIndex.load(other)
    assert issubclass(IndexFormatError, ValueError) and issubclass(IndexCorrupt, ValueError)


def test_other_format_version_is_refused_naming_both(
    saved: tuple[VectorIndex, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, _ = saved
    newer = tmp_path / "newer.pmindex"
    monkeypatch.setattr(persistence, "FORMAT_VERSION", 2)
    index.save(newer)
    monkeypatch.undo()
    with pytest.raises(IndexFormatError, match="version 2.*version 1"):
        VectorIndex.load(newer)


def _rewrite(index: VectorIndex, path: Path, **changes: object) -> Path:
    """A file with valid checksums whose header was edited: tests the checks after the checksums."""
    header, sections = persistence.dump_state(index._state, index.dim)
    header.update(changes)
    persistence.write_index_file(path, header, sections)
    return path


def test_unknown_params_from_newer_code_are_refused(saved: tuple[VectorIndex, Path], tmp_path: Path) -> None:
    index, _ = saved
    params = {**index.params.to_dict(), "diskann_beam": 4}
    with pytest.raises(IndexFormatError, match="diskann_beam"):
        VectorIndex.load(_rewrite(index, tmp_path / "p.pmindex", params=params))


def test_inconsistent_contents_are_refused_as_corrupt(saved: tuple[VectorIndex, Path], tmp_path: Path) -> None:
    index, _ = saved
    with pytest.raises(IndexCorrupt, match="live"):
        VectorIndex.load(_rewrite(index, tmp_path / "a.pmindex", live=len(index) + 1))
    with pytest.raises(IndexCorrupt, match="dim"):
        VectorIndex.load(_rewrite(index, tmp_path / "b.pmindex", dim=DIM * 2))
    wrong = "hnsw" if index.params.kind != "hnsw" else "flat"
    with pytest.raises(IndexCorrupt):
        VectorIndex.load(_rewrite(index, tmp_path / "c.pmindex", backend=wrong))
