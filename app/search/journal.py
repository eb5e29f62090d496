"""A bounded record of applied writes, replayed onto a freshly built index before it is swapped in.

A rebuild reads a snapshot of the database at change-log version V and takes a while; writes
keep arriving meanwhile and are applied to the old index. Without this journal the swap would
drop them. While a rebuild is running nothing is evicted, so every write made during the build
is replayed; outside rebuilds only the most recent `max_rows` rows are kept, which is what lets
a rebuild start from a snapshot slightly older than the index itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from app.search.batch import Batch


@dataclass(frozen=True)
class Change:
    """One applied upsert or remove, in the caller's terms (product ids, raw attributes)."""

    op: int  # local, strictly increasing order of application
    version: int | None
    action: str  # "upsert" | "remove"
    batch: Batch  # for "remove" only the ids are used

    @property
    def rows(self) -> int:
        return max(1, len(self.batch))


class ChangeJournal:
    """Not thread-safe by itself: callers hold the index's write lock (or read lock while pinning)."""

    def __init__(self, max_rows: int = 20_000) -> None:
        self.max_rows = max_rows
        self._entries: deque[Change] = deque()
        self._rows = 0
        self._next_op = 0
        self._pins = 0
        self.max_evicted_version = -1  # newest version that can no longer be replayed

    def __len__(self) -> int:
        return len(self._entries)

    def next_op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def record(self, change: Change) -> None:
        self._entries.append(change)
        self._rows += change.rows
        self._evict()

    def _evict(self) -> None:
        while self._pins == 0 and self._rows > self.max_rows and len(self._entries) > 1:
            old = self._entries.popleft()
            self._rows -= old.rows
            if old.version is not None:
                self.max_evicted_version = max(self.max_evicted_version, old.version)

    def pin(self) -> int:
        """Stop evicting (a rebuild starts); returns the op number that marks the start."""
        self._pins += 1
        return self._next_op

    def unpin(self) -> None:
        self._pins -= 1
        self._evict()

    def forget_before(self, version: int) -> None:
        """Changes up to `version` came from elsewhere (a file, a rebuild) and cannot be replayed."""
        self.max_evicted_version = max(self.max_evicted_version, version)

    def replayable_since(self, version: int) -> bool:
        """True when every write newer than `version` is still held."""
        return version >= self.max_evicted_version

    def to_replay(self, version: int, start_op: int) -> list[Change]:
        """Writes a snapshot at `version`, taken when op `start_op` was next, does not contain.

        Versioned writes newer than the snapshot are replayed whenever they happened; writes at
        exactly `version` or without a version only when they came after the start (replaying
        them is idempotent anyway).
        """
        out = []
        for c in self._entries:
            after_start = c.op >= start_op
            if c.version is None:
                if after_start:
                    out.append(c)
            elif c.version > version or (c.version == version and after_start):
                out.append(c)
        return out
