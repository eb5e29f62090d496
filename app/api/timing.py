"""Per-stage timings of a request that its endpoint cannot take itself: parse and serialise.

FastAPI reads, decodes and validates the body before the endpoint runs, and validates and
encodes the returned model after it. :class:`TimedRoute` notes when the route got the request,
so the endpoint can report ``parse`` (route entry -> endpoint start) in its body, and once the
response is encoded it adds a ``Server-Timing`` header: ``serialize`` (endpoint return -> bytes
ready) and ``total`` (route entry -> bytes ready). What a client measures beyond ``total`` is
the server's middleware, HTTP and the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class TimedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def timed(request: Request) -> Response:
            request.state.received = time.perf_counter()
            response = await handler(request)
            done = time.perf_counter()
            parts = [f"total;dur={(done - request.state.received) * 1000:.3f}"]
            returned = getattr(request.state, "returned", None)
            if returned is not None:
                parts.append(f"serialize;dur={(done - returned) * 1000:.3f}")
            response.headers.append("Server-Timing", ", ".join(parts))
            return response

        return timed


def ms_since_received(request: Request) -> float:
    """Milliseconds since the route got ``request`` (0 outside a :class:`TimedRoute`)."""
    received = getattr(request.state, "received", None)
    return (time.perf_counter() - received) * 1000 if received is not None else 0.0


def mark_returned(request: Request) -> None:
    """The endpoint is about to return: what follows is serialisation."""
    request.state.returned = time.perf_counter()
