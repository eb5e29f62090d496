"""A bounded loopback load generator: fixed concurrency, maximum request count and duration.

Refuses any target that is not a loopback address, so it can never load a shared service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx


def assert_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise SystemExit(f"refusing to load {host}: only loopback targets are allowed")


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed_s: float = 0.0
    bodies: list[Any] = field(default_factory=list)


async def _run(
    base_url: str,
    path: str,
    make_body: Callable[[int], dict],
    concurrency: int,
    max_requests: int,
    duration_s: float,
    keep_bodies: bool,
) -> LoadResult:
    result = LoadResult()
    counter = 0
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal counter
            while counter < max_requests and time.perf_counter() < deadline:
                i = counter
                counter += 1
                body = make_body(i)
                t = time.perf_counter()
                try:
                    res = await client.post(path, json=body)
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                result.latencies_ms.append((time.perf_counter() - t) * 1000)
                result.statuses[res.status_code] = result.statuses.get(res.status_code, 0) + 1
                if res.status_code >= 500:
                    result.errors += 1
                if keep_bodies:
                    result.bodies.append((i, res.json() if res.status_code == 200 else None))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - start
    return result


def run_load(
    base_url: str,
    path: str,
    make_body: Callable[[int], dict],
    concurrency: int,
    max_requests: int,
    duration_s: float,
    keep_bodies: bool = False,
) -> LoadResult:
    assert_loopback(base_url)
    return asyncio.run(_run(base_url, path, make_body, concurrency, max_requests, duration_s, keep_bodies))


@dataclass
class FixedRateResult:
    """One record per request: (sent at, s from start; latency ms; status, 0 = transport error;
    how late it was sent, ms, because the in-flight cap was reached)."""

    records: list[tuple[float, float, int, float]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(1 for _, _, status, _ in self.records if status == 0 or status >= 500)


async def _run_fixed_rate(
    base_url: str,
    path: str,
    make_body: Callable[[int], dict],
    rate: float,
    duration_s: float,
    max_requests: int,
    max_in_flight: int,
) -> FixedRateResult:
    result = FixedRateResult()
    slots = asyncio.Semaphore(max_in_flight)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    total = min(max_requests, int(rate * duration_s))
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:

        async def one(i: int, sent: float, late_ms: float) -> None:
            try:
                res = await client.post(path, json=make_body(i))
                status = res.status_code
            except httpx.HTTPError:
                status = 0
            finally:
                slots.release()
            result.records.append((sent - start, (time.perf_counter() - sent) * 1000, status, late_ms))

        start = time.perf_counter()
        tasks = []
        for i in range(total):
            due = start + i / rate  # open loop: the schedule does not wait for slow answers
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - start >= duration_s:
                break
            await slots.acquire()
            sent = time.perf_counter()
            tasks.append(asyncio.create_task(one(i, sent, max(0.0, (sent - due) * 1000))))
        await asyncio.gather(*tasks)
        result.elapsed_s = time.perf_counter() - start
    return result


def run_fixed_rate(
    base_url: str,
    path: str,
    make_body: Callable[[int], dict],
    rate: float,
    duration_s: float,
    max_requests: int,
    max_in_flight: int = 32,
) -> FixedRateResult:
    """Send POSTs at a fixed rate (open loop) for at most `duration_s` / `max_requests`."""
    assert_loopback(base_url)
    return asyncio.run(_run_fixed_rate(base_url, path, make_body, rate, duration_s, max_requests, max_in_flight))
