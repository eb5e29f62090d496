"""Job queues: Redis lists shared by worker processes, or an in-process thread.

The database holds each job's state and lease; the queue only says "look at job X". A job
pushed twice is harmless (the lease lets one claimant run it), and a job whose worker died
is found again by the reaper through its expired lease. That is the at-least-once contract.
"""

from __future__ import annotations

import logging
import os
import queue as stdqueue
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The queue backend (Redis) cannot be reached."""


class JobQueue(Protocol):
    def push(self, job_id: str) -> None: ...

    def pop(self, timeout: float) -> str | None: ...

    def ack(self, job_id: str) -> None: ...

    def ping(self) -> bool: ...


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class InProcessQueue:
    def __init__(self) -> None:
        self._queue: stdqueue.Queue[str] = stdqueue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def push(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._pending:
                return
            self._pending.add(job_id)
        self._queue.put(job_id)

    def pop(self, timeout: float) -> str | None:
        try:
            job_id = self._queue.get(timeout=timeout)
        except stdqueue.Empty:
            return None
        with self._lock:
            self._pending.discard(job_id)
        return job_id

    def ack(self, job_id: str) -> None:
        return None

    def ping(self) -> bool:
        return True


class RedisQueue:
    """Reliable-queue pattern: BLMOVE into a per-worker processing list, LREM on ack."""

    def __init__(self, url: str, name: str = "productmatch", owner: str | None = None) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.key = f"{name}:jobs:queue"
        self.owner = owner or worker_name()
        self.processing = f"{name}:jobs:processing:{self.owner}"
        self._marker = f"{name}:jobs:pushed:"

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"Redis is unavailable: {exc}") from exc

    def push(self, job_id: str) -> None:
        # The marker stops the reaper from flooding the list with one waiting job.
        if self._call(self._redis.set, self._marker + job_id, 1, nx=True, ex=30):
            self._call(self._redis.lpush, self.key, job_id)

    def pop(self, timeout: float) -> str | None:
        raw = self._call(self._redis.blmove, self.key, self.processing, timeout, "RIGHT", "LEFT")
        if raw is None:
            return None
        self._call(self._redis.expire, self.processing, 86_400)
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._call(self._redis.delete, self._marker + job_id)
        return job_id

    def ack(self, job_id: str) -> None:
        self._call(self._redis.lrem, self.processing, 0, job_id)

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:  # noqa: BLE001
            return False

    def length(self) -> int:
        return int(self._call(self._redis.llen, self.key))


def make_queue(redis_url: str | None, name: str = "productmatch") -> JobQueue:
    return RedisQueue(redis_url, name) if redis_url else InProcessQueue()
