"""VectorIndex behaviour: exact search, upsert/remove semantics, filters, versions, tombstones, R4."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import faiss
import numpy as np
import pytest

from app.search import IndexParams, VectorIndex
from app.search.state import IndexState
from tests.app.search import BRANDS, catalogue, clustered, queries_near, unit

DIM = 32

# ivfpq with a low training threshold, so small tests exercise the trained IVF-PQ path.
SMALL_IVF = IndexParams(kind="ivfpq", ivf_min_train=256)
KIND_PARAMS = {
    "flat": IndexParams(kind="flat"),
    "hnsw": IndexParams(kind="hnsw", hnsw_m=16, hnsw_ef_construction=64),
    "ivfpq": SMALL_IVF,
}


@pytest.fixture(autouse=True, scope="module")
def _one_faiss_thread() -> Iterator[None]:
    """OpenMP spin-waits badly on a shared 2-core runner; one thread keeps these tests fast."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _built(kind: str, n: int = 600, **overrides: object) -> tuple[VectorIndex, tuple]:
    params = IndexParams.from_dict({**KIND_PARAMS[kind].to_dict(), **overrides})
    data = catalogue(n, DIM)
    index = VectorIndex(DIM, params)
    index.rebuild(*data, version=1)
    return index, data


def _brand_of(data: tuple) -> dict[int, str | None]:
    ids, _, brands, _ = data
    return dict(zip(ids.tolist(), brands, strict=True))


# -- exact search ---------------------------------------------------------------------------------


def test_flat_search_equals_numpy_topk() -> None:
    index, (ids, vectors, _, _) = _built("flat", n=2000)
    queries = queries_near(vectors, 25)
    result = index.search(queries, 10)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert result.ids == ids[order].tolist()
    np.testing.assert_allclose(result.scores, np.take_along_axis(scores, order, axis=1), atol=1e-5)
    assert result.version == 1


def test_empty_index_returns_empty_lists() -> None:
    index = VectorIndex(DIM)
    result = index.search(clustered(3, DIM), 5)
    assert result.ids == [[], [], []] and result.scores == [[], [], []] and result.version == 0
    assert len(index) == 0 and index.ids().tolist() == []


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_k_larger_than_live_count_gives_short_lists_without_padding(kind: str) -> None:
    index = VectorIndex(DIM, KIND_PARAMS[kind])
    ids, vectors, brands, cats = catalogue(12, DIM)
    index.upsert(ids, vectors, brands, cats)
    index.remove(ids[:4])
    result = index.search(vectors[:3], 50)
    for row, scores in zip(result.ids, result.scores, strict=True):
        assert sorted(row) == sorted(ids[4:].tolist())
        assert scores == sorted(scores, reverse=True)


def test_hnsw_answers_depend_on_the_vectors_not_on_how_the_graph_was_built() -> None:
    """Incremental inserts and one rebuild make different graphs; the scores must not differ,
    not even in the last bit (restart and rebuild equality rely on it)."""
    data = catalogue(800, DIM)
    ids, vectors, brands, cats = data
    incremental = VectorIndex(DIM, KIND_PARAMS["hnsw"])
    for start in range(0, len(ids), 37):
        stop = start + 37
        incremental.upsert(ids[start:stop], vectors[start:stop], brands[start:stop], cats[start:stop])
    rebuilt, _ = _built("hnsw", n=800)
    queries = queries_near(vectors, 60)
    a, b = incremental.search(queries, 10), rebuilt.search(queries, 10)
    exact = {int(i): v for i, v in zip(ids, vectors, strict=True)}
    for row_a, row_b, sa, sb, q in zip(a.ids, b.ids, a.scores, b.scores, queries, strict=True):
        common = set(row_a) & set(row_b)
        assert len(common) >= 8
        by_a, by_b = dict(zip(row_a, sa, strict=True)), dict(zip(row_b, sb, strict=True))
        for pid in common:
            assert by_a[pid] == by_b[pid]
            assert by_a[pid] == pytest.approx(float(q.astype(np.float64) @ exact[pid]), abs=1e-6)
        assert sa == sorted(sa, reverse=True)


# -- upsert / remove ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_upsert_replaces_by_id(kind: str) -> None:
    index, (ids, vectors, brands, cats) = _built(kind)
    target = int(ids[5])
    new_vec = unit(np.random.default_rng(9).standard_normal((1, DIM)))
    index.upsert(np.array([target]), new_vec, ["Globex"], ["tv"], version=2)
    assert len(index) == len(ids)
    assert index.ids().tolist().count(target) == 1
    hit = index.search(new_vec, 3)
    assert hit.ids[0][0] == target and hit.scores[0][0] == pytest.approx(1.0, abs=1e-4)
    old = index.search(vectors[5:6], 20)
    assert target not in old.ids[0] or old.scores[0][old.ids[0].index(target)] < 0.999
    assert index.search(new_vec, 1, brand="globex").ids[0] == [target]


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_upsert_is_idempotent(kind: str) -> None:
    index, (ids, vectors, brands, cats) = _built(kind)
    index.upsert(ids[:50], vectors[:50], brands[:50], cats[:50], version=2)
    before = index.stats()
    index.upsert(ids[:50], vectors[:50], brands[:50], cats[:50], version=2)
    after = index.stats()
    assert after["ntotal"] == before["ntotal"] and after["live"] == len(ids)
    assert after["tombstones"] == 0


def test_repeated_id_in_one_batch_keeps_the_last_row() -> None:
    index = VectorIndex(DIM)
    vecs = clustered(2, DIM, seed=4)
    index.upsert(np.array([7, 7]), vecs, ["first", "last"], [None, None])
    assert len(index) == 1
    assert index.search(vecs[1:], 1).scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert index.search(vecs[1:], 1, brand="last").ids == [[7]]


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_remove_unknown_ids_and_twice(kind: str) -> None:
    index, (ids, vectors, _, _) = _built(kind)
    gone = ids[:30]
    index.remove(np.concatenate([gone, [123456789]]), version=2)
    index.remove(gone, version=3)
    assert len(index) == len(ids) - 30 and index.version == 3
    assert not set(gone.tolist()) & set(index.ids().tolist())
    result = index.search(vectors[:30], 10)
    assert not set(gone.tolist()) & {i for row in result.ids for i in row}
    assert all(i >= 0 for row in result.ids for i in row)


def test_input_validation() -> None:
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match="shape"):
        index.upsert(np.array([1]), np.ones((1, DIM + 1), np.float32), [None], [None])
    with pytest.raises(ValueError, match="NaN"):
        index.upsert(np.array([1]), np.full((1, DIM), np.nan, np.float32), [None], [None])
    with pytest.raises(ValueError, match="integers"):
        index.remove(np.array([1.5]))
    with pytest.raises(ValueError, match="brands"):
        index.upsert(np.array([1, 2]), np.ones((2, DIM), np.float32), [None], [None, None])
    with pytest.raises(ValueError, match="k must"):
        index.search(np.ones((1, DIM), np.float32), 0)
    with pytest.raises(ValueError, match="kind"):
        IndexParams(kind="annoy")


# -- versions ---------------------------------------------------------------------------------------


def test_versions_skip_stale_changes_and_advance_on_empty_remove() -> None:
    index, (ids, vectors, brands, cats) = _built("flat")
    index.remove(ids[:1], version=5)
    index.upsert(ids[:1], vectors[:1], brands[:1], cats[:1], version=4)  # stale redelivery
    assert int(ids[0]) not in index.ids().tolist() and index.version == 5
    index.upsert(ids[:1], vectors[:1], brands[:1], cats[:1], version=5)  # same seq: applied
    assert int(ids[0]) in index.ids().tolist()
    index.remove(np.zeros(0, np.int64), version=9)
    assert index.version == 9
    index.upsert(ids[1:2], vectors[1:2], brands[1:2], cats[1:2])  # unversioned: applied, version kept
    assert index.version == 9


def test_rebuild_replays_writes_made_while_it_was_building(monkeypatch: pytest.MonkeyPatch) -> None:
    index, (ids, vectors, brands, cats) = _built("hnsw")
    real_build = IndexState.build
    extra = unit(np.random.default_rng(3).standard_normal((1, DIM)))

    def slow_build(*args: object, **kwargs: object) -> IndexState:
        writer = threading.Thread(target=index.upsert, args=([424242], extra, ["Acme"], [None]), kwargs={"version": 8})
        writer.start()
        writer.join()
        assert index.search(extra, 1).ids == [[424242]]  # the old state serves meanwhile
        return real_build(*args, **kwargs)

    monkeypatch.setattr(IndexState, "build", staticmethod(slow_build))
    index.rebuild(ids, vectors, brands, cats, version=7)
    assert index.version == 8 and len(index) == len(ids) + 1
    assert index.search(extra, 1).ids == [[424242]]


def test_rebuild_older_than_replayable_history_is_refused(tmp_path) -> None:
    index, data = _built("flat")
    index.remove(data[0][:1], version=10)
    index.rebuild(*data, version=9)  # the journal still holds version 10: replayed
    assert index.version == 10 and int(data[0][0]) not in index.ids().tolist()
    index.save(tmp_path / "i.pmindex")
    loaded = VectorIndex.load(tmp_path / "i.pmindex")
    with pytest.raises(ValueError, match="older"):
        loaded.rebuild(*data, version=9)


# -- filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact_max", [0, 4096], ids=["ann-with-selector", "exact-subset"])
@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_filters(kind: str, exact_max: int) -> None:
    index, data = _built(kind, filter_exact_max=exact_max)
    ids, vectors, brands, cats = data
    by_id = {int(i): (b, c) for i, b, c in zip(ids, brands, cats, strict=True)}
    queries = queries_near(vectors, 8)

    brand_hits = index.search(queries, 10, brand="  aCmE ")
    assert all(len(row) == 10 for row in brand_hits.ids)
    assert {by_id[i][0] for row in brand_hits.ids for i in row} == {"Acme"}

    cat_hits = index.search(queries, 10, category="AUDIO")
    assert {by_id[i][1] for row in cat_hits.ids for i in row} == {"audio"}

    both = index.search(queries, 500, brand="Acme", category="audio")
    expected = {i for i, (b, c) in by_id.items() if b == "Acme" and c == "audio"}
    for row in both.ids:  # the ANN path may miss a few of a tiny filtered set, never add others
        assert set(row) <= expected and len(row) >= (len(expected) if exact_max else 0.8 * len(expected))

    assert index.search(queries, 10, brand="NoSuchBrand").ids == [[]] * len(queries)
    assert index.search(queries, 10, brand="Acme", category="nope").ids == [[]] * len(queries)
    assert index.search(queries, 10, brand="   ").ids == index.search(queries, 10).ids


def test_filters_follow_attribute_updates_and_removals() -> None:
    index, (ids, vectors, brands, cats) = _built("hnsw")
    acme = [int(i) for i, b in zip(ids, brands, strict=True) if b == "Acme"]
    index.upsert(np.array(acme[:3]), vectors[[(i - 1000) // 7 for i in acme[:3]]], ["Stark"] * 3, [None] * 3)
    index.remove(np.array(acme[3:6]))
    hits = index.search(vectors, 1000, brand="acme")
    assert all(set(row) == set(acme[6:]) for row in hits.ids)
    assert set(index.search(vectors[:1], 1000, brand="stark").ids[0]) >= set(acme[:3])


# -- HNSW tombstones and compaction -----------------------------------------------------------------


def test_hnsw_tombstones_are_never_returned_and_compaction_happens() -> None:
    index, (ids, vectors, brands, cats) = _built("hnsw", n=400)
    rng = np.random.default_rng(5)
    moved = ids[:60]
    index.upsert(moved, unit(rng.standard_normal((60, DIM))), brands[:60], cats[:60], version=2)
    index.remove(ids[60:100], version=3)
    stats = index.stats()
    assert stats["tombstones"] == 100 and stats["ntotal"] == 460 and stats["live"] == 360
    old = index.search(vectors[:100], 20)
    for q, row in enumerate(old.ids):
        assert not set(ids[60:100].tolist()) & set(row)
        if int(ids[q]) in row and q < 60:  # a moved product may match, but only by its new vector
            assert old.scores[q][row.index(int(ids[q]))] < 0.999
    index.remove(ids[100:160], version=4)  # tombstones 160 / 460 > 30%: compacts
    stats = index.stats()
    assert stats["tombstones"] == 0 and stats["ntotal"] == stats["live"] == 300
    assert index.version == 4
    assert index.ids().tolist() == sorted(ids[:60].tolist() + ids[160:].tolist())
    result = index.search(vectors[160:170], 1)
    assert [row[0] for row in result.ids] == ids[160:170].tolist()


def test_ivfpq_serves_exact_search_until_it_can_train() -> None:
    params = IndexParams(kind="ivfpq", ivf_min_train=300)
    index = VectorIndex(DIM, params)
    ids, vectors, brands, cats = catalogue(400, DIM)
    index.upsert(ids[:200], vectors[:200], brands[:200], cats[:200], version=1)
    assert index.stats()["backend"] == "exact_side" and index.stats()["trained"] is False
    assert index.search(vectors[:5], 1).ids == [[int(i)] for i in ids[:5]]
    index.upsert(ids[200:], vectors[200:], brands[200:], cats[200:], version=2)
    stats = index.stats()
    assert stats["backend"] == "ivfpq" and stats["trained"] and stats["live"] == 400 and stats["version"] == 2
    assert index.search(vectors[300:305], 1).ids == [[int(i)] for i in ids[300:305]]


# -- R4: searches during upserts, removes, compaction and rebuild swaps -----------------------------


class _Db:
    """The source of truth of the concurrency test, with the live set logged per version."""

    def __init__(self, n: int) -> None:
        ids, vectors, brands, cats = catalogue(n, DIM, seed=11)
        self.rows = {int(i): (v, b, c) for i, v, b, c in zip(ids, vectors, brands, cats, strict=True)}
        self.version = 0
        self.lock = threading.Lock()
        self.log: dict[int, dict[int, str | None]] = {0: {}}
        self.next_id = int(ids.max()) + 7

    def snapshot(self) -> tuple[tuple, int]:
        with self.lock:
            pids = np.array(sorted(self.rows), dtype=np.int64)
            rows = [self.rows[int(p)] for p in pids]
            vectors = np.stack([r[0] for r in rows]) if rows else np.zeros((0, DIM), np.float32)
            return (pids, vectors, [r[1] for r in rows], [r[2] for r in rows]), self.version

    def change(self, rng: random.Random) -> tuple[str, np.ndarray, np.ndarray, list, list, int]:
        """Mutate the truth, log the brands of the new version, return the matching index call."""
        with self.lock:
            self.version += 1
            action = rng.choice(["move", "move", "add", "remove", "rebrand"])
            live = list(self.rows)
            if action == "add":
                pids = [self.next_id + 7 * j for j in range(4)]
                self.next_id += 28
            else:
                pids = rng.sample(live, min(4, len(live)))
            if action == "remove":
                for p in pids:
                    del self.rows[p]
            else:
                seed = rng.randrange(1 << 30)
                fresh = unit(np.random.default_rng(seed).standard_normal((len(pids), DIM)))
                for j, p in enumerate(pids):
                    old = self.rows.get(p)
                    vec = old[0] if action == "rebrand" and old else fresh[j]
                    self.rows[p] = (vec, rng.choice(BRANDS), rng.choice(["phones", None]))
            self.log[self.version] = {p: r[1] for p, r in self.rows.items()}
            rows = [self.rows.get(p) for p in pids]
            vecs = np.stack([r[0] for r in rows]) if action != "remove" else np.zeros((0, DIM), np.float32)
            brands = [r[1] for r in rows] if action != "remove" else []
            cats = [r[2] for r in rows] if action != "remove" else []
            return action, np.array(pids, np.int64), vecs, brands, cats, self.version


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_searches_during_writes_and_rebuilds_see_one_consistent_version(kind: str) -> None:
    params = IndexParams.from_dict({**KIND_PARAMS[kind].to_dict(), "compact_ratio": 0.1})
    db = _Db(600)
    index = VectorIndex(DIM, params)
    data, version = db.snapshot()
    db.log[0] = {int(p): b for p, b in zip(data[0], data[2], strict=True)}
    index.rebuild(*data, version=version)
    queries = queries_near(data[1], 16, seed=3)
    errors: list[BaseException] = []
    done = threading.Event()
    checked = [0]

    def searcher(brand: str | None) -> None:
        try:
            while not done.is_set():
                result = index.search(queries, 10, brand=brand)
                brands_then = db.log[result.version]
                for row, scores in zip(result.ids, result.scores, strict=True):
                    assert set(row) <= set(brands_then), f"ids not live at version {result.version}"
                    assert all(a >= b - 1e-6 for a, b in zip(scores, scores[1:], strict=False))
                    if brand is not None:
                        assert {brands_then[i] for i in row} <= {brand}
                checked[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def writer() -> None:
        rng = random.Random(7)
        try:
            for _ in range(150):
                action, pids, vecs, brands, cats, v = db.change(rng)
                if action == "remove":
                    index.remove(pids, version=v)
                else:
                    index.upsert(pids, vecs, brands, cats, version=v)
                time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def rebuilder() -> None:
        try:
            for _ in range(3):
                time.sleep(0.03)
                snap, v = db.snapshot()
                index.rebuild(*snap, version=v)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=searcher, args=(b,)) for b in (None, None, "Acme")]
    writers = [threading.Thread(target=writer), threading.Thread(target=rebuilder)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    for t in readers:
        t.join(timeout=30)
    assert not errors, errors[0]
    assert checked[0] > 0
    final, v = db.snapshot()
    assert index.version == v
    assert index.ids().tolist() == final[0].tolist()
    stored = index._state.snapshot()  # white-box: the exact vectors and attributes the index holds
    order = np.argsort(stored.ids)
    assert np.array_equal(stored.ids[order], final[0]) and np.array_equal(stored.vectors[order], final[1])
    assert [stored.brands[i] for i in order] == [b.casefold() if b else None for b in final[2]]
