"""A heartbeat log line for long loops whose progress bar is off (``--no-progress``, ``nohup``).

A background run's log otherwise says nothing between epochs (an epoch of the default recipe is
half an hour); one line every ``every_s`` seconds gives the step, the rate and the time left.
"""

from __future__ import annotations

import logging
import time


class Heartbeat:
    """Call :meth:`tick` once per step; it logs at most every ``every_s`` seconds (``enabled``)."""

    def __init__(self, logger: logging.Logger, what: str, total: int, every_s: float = 300.0,
                 enabled: bool = True) -> None:  # fmt: skip
        self.logger = logger
        self.what = what
        self.total = total
        self.every_s = every_s
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = self.start

    def tick(self, done: int, **extra: float) -> bool:
        """``done`` steps finished; True when a line was logged."""
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every_s:
            return False
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        details = "".join(f", {k} {v:.4g}" for k, v in extra.items())
        self.logger.info("%s: %d/%d steps, %.3g steps/s, %.0f min left%s", self.what, done, self.total, rate,
                         left / 60, details)  # fmt: skip
        return True


__all__ = ["Heartbeat"]
