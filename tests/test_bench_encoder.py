"""bench_encoder's request-sized timing: every group through every variant, no variant always first."""

from __future__ import annotations

import time

from benchmarks.bench_encoder import request_latency


def test_request_latency_rotates_the_variants_and_times_each_group() -> None:
    calls: list[tuple[str, int]] = []

    def variant(name: str, seconds: float):  # type: ignore[no-untyped-def]
        def score(group: list[tuple[str, str]]) -> None:
            calls.append((name, len(group)))
            time.sleep(seconds)

        return score

    variants = {"a": variant("a", 0.0), "b": variant("b", 0.004), "c": variant("c", 0.0)}
    pairs = [(f"left {i}", f"right {i}") for i in range(23)]
    out = request_latency(variants, pairs, size=5)

    assert out["pairs_per_request"] == 5 and out["requests"] == 4  # the 3 left over are no request
    assert all(size == 5 for _, size in calls) and len(calls) == 12
    firsts = [calls[g * 3][0] for g in range(4)]
    assert firsts == ["a", "b", "c", "a"]
    assert out["p50"]["b"] >= 4.0 > out["p50"]["a"]
    assert out["p99"]["b"] >= out["p50"]["b"]
