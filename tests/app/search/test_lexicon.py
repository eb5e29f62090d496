"""The catalogue's BM25 lexicon: it follows the change log and rebuilds in the background."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

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
