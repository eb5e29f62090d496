"""The catalogue's BM25 lexicon: it follows the change log and rebuilds in the background."""

from __future__ import annotations

import threading
from pathlib import Path
from unittest.mock import patch

import app.search.lexicon as lexicon_module
from app.db.base import make_engine, make_session_factory
from app.pipeline.encoder import Encoder
from app.search.lexicon import CatalogueLexicon
from tests.app.pipeline.test_hybrid import CODES, _catalogue, _serve


def test_lexicon_follows_the_change_log_and_rebuilds(tmp_path: Path, db_url: str, tiny_encoder: Encoder) -> None:
    with _serve(tmp_path, db_url, tiny_encoder) as client:
        factory = make_session_factory(make_engine(db_url))
        lexicon = CatalogueLexicon(factory)
        lexicon.open()  # an empty catalogue
        _catalogue(client)
        version = client.app.state.services.index.index.version
        with lexicon.at(version) as live:
            assert len(live) == 30 and live.stats.df["acme"] == 30 and live.stats.df["qx4000"] == 1
            ids, scores = live.top(f"{CODES[4]} zinc", 5)
        assert len(ids) == 5 and scores == sorted(scores, reverse=True)
        client.put("/v1/products/w-4", json={"title": "Renamed gizmo", "brand": "Acme"})
        client.delete("/v1/products/w-5")
        version = client.app.state.services.index.index.version
        with lexicon.at(version) as live:
            assert len(live) == 29 and live.stats.df["qx4148"] == 0 and live.stats.df["gizmo"] == 1
            assert live.stats.df["qx4185"] == 0  # the deleted product left the statistics
        # A large delta triggers a background rebuild from the database; results do not change.
        small = CatalogueLexicon(factory, rebuild_ratio=0.01)
        small.open()
        with patch("app.search.lexicon._MIN_REBUILD_DELTA", 0):
            for i in range(3):
                client.put(f"/v1/products/x-{i}", json={"title": f"Gadget {i} brass", "brand": "Globex"})
            version = client.app.state.services.index.index.version
            with small.at(version) as live:
                assert live.delta_size == 3
                before = live.top("industrial widget brass", 10)
            small.wait(10)
        with small.at(version) as live:
            assert live.delta_size == 0 and len(live) == 32
            assert live.top("industrial widget brass", 10) == before


def test_a_replay_reads_the_database_without_holding_back_searches(
    tmp_path: Path, db_url: str, tiny_encoder: Encoder
) -> None:
    """While one replay waits on the database, a search at a version already reached goes on."""
    with _serve(tmp_path, db_url, tiny_encoder) as client:
        _catalogue(client)
        factory = make_session_factory(make_engine(db_url))
        lexicon = CatalogueLexicon(factory)
        lexicon.open()
        reached = client.app.state.services.index.index.version
        client.put("/v1/products/late", json={"title": "Late arrival QX-9999 copper", "brand": "Acme"})
        target = client.app.state.services.index.index.version
        reading, release = threading.Event(), threading.Event()
        real = lexicon_module.repo.changes_since

        def slow_changes_since(*args: object, **kwargs: object) -> object:
            reading.set()
            assert release.wait(30)
            return real(*args, **kwargs)  # type: ignore[arg-type]

        with patch.object(lexicon_module.repo, "changes_since", slow_changes_since):
            replay = threading.Thread(target=lexicon.catch_up, args=(target,))
            replay.start()
            assert reading.wait(10)  # the replay is inside its database read now
            searched: list[list[int]] = []
            search = threading.Thread(target=lambda: searched.append(_top(lexicon, reached, "qx4000 zinc")))
            search.start()
            search.join(5)
            finished = not search.is_alive()
            release.set()
            replay.join(10)
            search.join(10)
        assert finished, "a search waited for another thread's database read"
        assert searched and searched[0]
        assert lexicon.version == target
        with lexicon.at(target) as live:
            assert live.top("qx9999 copper", 1)[1] and live.stats.df["copper"] == 1


def _top(lexicon: CatalogueLexicon, version: int, query: str) -> list[int]:
    with lexicon.at(version) as live:
        return live.top(query, 5)[0]


def test_searches_during_updates_end_where_a_restart_starts(tmp_path: Path, db_url: str, tiny_encoder: Encoder) -> None:
    """Concurrent searches while products change: no error, every search sees at least the
    version it asked for, and the lexicon that followed the log answers exactly as one built
    afresh from the database (a restart), top-k and candidate scores alike."""
    queries = ["industrial widget brass", "qx4037 steel", "gadget zinc 7", "acme renamed", "copper"]
    with _serve(tmp_path, db_url, tiny_encoder) as client:
        _catalogue(client)
        services = client.app.state.services
        factory = make_session_factory(make_engine(db_url))
        lexicon = CatalogueLexicon(factory, rebuild_ratio=0.05)
        lexicon.open()
        stop = threading.Event()
        errors: list[BaseException] = []

        def search() -> None:
            try:
                while not stop.is_set():
                    version = services.index.index.version
                    for q in queries:
                        with lexicon.at(version) as live:
                            ids, scores = live.top(q, 10)
                            assert scores == sorted(scores, reverse=True)
                            assert live.scores_for(q, ids).tolist() == scores
                    assert lexicon.version >= version
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        readers = [threading.Thread(target=search) for _ in range(3)]
        for t in readers:
            t.start()
        with patch("app.search.lexicon._MIN_REBUILD_DELTA", 0):  # background rebuilds and swaps too
            for i in range(40):
                client.put(f"/v1/products/g-{i}", json={"title": f"Gadget zinc {i} copper", "brand": "Globex"})
                if i % 3 == 0:
                    client.put(f"/v1/products/w-{i % 30}", json={"title": f"Acme renamed {i}", "brand": "Acme"})
                if i % 5 == 0:
                    client.delete(f"/v1/products/g-{i // 2}")
                lexicon.catch_up(services.index.index.version)
            stop.set()
            for t in readers:
                t.join(30)
            lexicon.wait(30)
        assert not errors, errors
        version = services.index.index.version
        restarted = CatalogueLexicon(factory)
        restarted.open()
        ids_all = [int(i) for i in services.index.index.ids()]
        with lexicon.at(version) as live, restarted.at(version) as fresh:
            assert len(live) == len(fresh) and +live.stats.df == +fresh.stats.df
            for q in queries:
                assert live.top(q, 10) == fresh.top(q, 10)
                assert live.scores_for(q, ids_all).tolist() == fresh.scores_for(q, ids_all).tolist()
