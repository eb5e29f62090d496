from __future__ import annotations

import logging

import pytest

from training.progress_log import Heartbeat


def test_heartbeat_logs_rate_and_time_left_at_most_every_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 10.0, 100.0, 130.0, 400.0])
    monkeypatch.setattr("training.progress_log.time.monotonic", lambda: next(clock))
    beat = Heartbeat(logging.getLogger("hb"), "epoch 1/3", total=100, every_s=60.0)
    with caplog.at_level(logging.INFO, logger="hb"):
        assert not beat.tick(5)  # 10 s: too soon
        assert beat.tick(50, loss=0.25)  # 100 s: 0.5 steps/s, 50 left -> 100 s
        assert not beat.tick(60)  # 130 s: 30 s after the last line
        assert beat.tick(100)
    first, last = caplog.messages
    assert first == "epoch 1/3: 50/100 steps, 0.5 steps/s, 2 min left, loss 0.25"
    assert last.startswith("epoch 1/3: 100/100 steps") and "0 min left" in last


def test_heartbeat_is_silent_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    beat = Heartbeat(logging.getLogger("hb"), "x", total=10, every_s=0.0, enabled=False)
    with caplog.at_level(logging.INFO, logger="hb"):
        assert not beat.tick(3)
    assert not caplog.messages
