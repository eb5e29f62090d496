"""Pure ASGI middleware: request-body limit (413), admin authentication before the body is
read (401/403), JSON bodies checked for encoding and nesting (422), Prometheus request metrics.

All are plain ASGI callables rather than BaseHTTPMiddleware: a body limit must act while
`receive()` delivers bytes (Starlette spools multipart bodies before any dependency runs), and
BaseHTTPMiddleware can turn errors into exception groups and 500s. FastAPI parses a body before
it solves any dependency, so checks that must come first (auth) or that FastAPI would answer
with an anonymous "There was an error parsing the body" (bad UTF-8, deep nesting) live here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from app.core.security import token_matches

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body exceeds the limit of {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        default_limit: int,
        upload_limit: int,
        upload_paths: tuple[str, ...],
        path_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths
        self.path_limits = dict(path_limits or {})  # exact paths with a limit of their own

    def _limit_for(self, path: str) -> int:
        if path in self.path_limits:
            return self.path_limits[path]
        return self.upload_limit if path.startswith(self.upload_paths) else self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_413(send, limit)
                return

        received = 0
        exceeded = False
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    # Stop the body here; the app sees an end of stream and its response is replaced.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            if exceeded:
                if not responded:
                    responded = True
                    await _send_413(send, limit)
                return
            responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if exceeded:
                if not responded:
                    await _send_413(send, limit)
                return
            raise
        if exceeded and not responded:
            await _send_413(send, limit)


async def _send_json(send: Send, status: int, payload: object, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value
    return None


class AdminAuthMiddleware:
    """The admin bearer token is checked before anything else about an admin request.

    Without it, a malformed body to `/v1/admin/retrain` got a 422 describing the body to an
    anonymous caller: FastAPI reads and validates the body before it runs any dependency. The
    routes keep their own `require_admin` dependency too (and the OpenAPI security scheme).
    """

    def __init__(self, app: ASGIApp, token: str, prefix: str = "/v1/admin") -> None:
        self.app = app
        self.token = token
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        raw = (_header(scope, b"authorization") or b"").decode("latin-1")
        scheme, _, credentials = raw.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            await _send_json(send, 401, {"detail": "admin bearer token required"}, ((b"www-authenticate", b"Bearer"),))
            return
        if not token_matches(credentials.strip(), self.token):
            await _send_json(send, 403, {"detail": "the token is not an admin token"})
            return
        await self.app(scope, receive, send)


# Strings (with their escapes) are cut out before brackets are counted.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (approximate for broken JSON)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _is_json(scope: Scope) -> bool:
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return content_type == b"application/json" or (
        content_type.startswith(b"application/") and content_type.endswith(b"+json")
    )


def json_body_problem(body: bytes, max_depth: int) -> str | None:
    """Why a JSON request body cannot be parsed, in words, for the problems FastAPI leaves anonymous."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"body is not valid UTF-8 (byte offset {exc.start}); JSON bodies must be UTF-8"
    if body.count(b"[") + body.count(b"{") > max_depth:  # cheap pre-check: most bodies stop here
        depth = json_depth(body)
        if depth > max_depth:
            return f"JSON nested deeper than {max_depth} levels (found {depth})"
    return None


class JsonBodyMiddleware:
    """JSON request bodies must be UTF-8 and nested at most `max_depth` levels: 422 naming which.

    Sits inside the body limit. It buffers at most `max_bytes` (the JSON body limit): a larger
    body (only an upload route allows one, and those take forms) streams on unchecked.
    """

    def __init__(self, app: ASGIApp, max_depth: int, max_bytes: int) -> None:
        self.app = app
        self.max_depth = max_depth
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        replay: list[Message] = []
        size = 0
        complete = False
        while True:
            message = await receive()
            replay.append(message)
            if message["type"] != "http.request":
                break  # disconnect (or the body limit cut it): the app sees it as it comes
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
            if size > self.max_bytes:
                break
        if complete:
            body = b"".join(m.get("body", b"") for m in replay)
            problem = json_body_problem(body, self.max_depth)
            if problem is not None:
                await _send_json(send, 422, {"detail": [{"loc": ["body"], "msg": problem, "type": "json_invalid"}]})
                return

        async def replayed() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self.app(scope, replayed, send)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "productmatch_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "productmatch_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # Label by route template, not raw path, so ids do not explode the label set.
            label = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.requests.labels(method, label, str(status)).inc()
            self.latency.labels(method, label).observe(time.perf_counter() - start)
