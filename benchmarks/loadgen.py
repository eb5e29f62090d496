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
