"""scripts/blocking_misses.py lists exactly the queries whose match ranks below K."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import tiny_bi_encoder
from tests.helpers import load_script
from tests.training.test_eval_matcher import write_tiny_deepmatcher


def test_misses_are_the_queries_ranked_below_k(tmp_path: Path) -> None:
    data = write_tiny_deepmatcher(tmp_path / "data")
    script = load_script("blocking_misses")
    model = tiny_bi_encoder()
    every = script.misses(model, str(data), "deepmatcher", "test", k=0, show=3)
    assert len(every) == 6, "K=0: every positive test pair's query is listed, with its rank"
    for row in every:
        top = [a["text"] for a in row["above"]]
        assert [a["score"] for a in row["above"]] == sorted((a["score"] for a in row["above"]), reverse=True)
        if row["rank"] <= 3:  # the match is shown where its rank says
            assert top[row["rank"] - 1] in row["targets"]
            assert not set(top[: row["rank"] - 1]) & set(row["targets"])
    for k in range(0, max(r["rank"] for r in every) + 1):
        kept = script.misses(model, str(data), "deepmatcher", "test", k=k, show=3)
        assert kept == [r for r in every if r["rank"] > k]
    assert script.misses(model, str(data), "deepmatcher", "test", k=10_000, show=3) == []
