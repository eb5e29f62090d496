"""Documented error responses, so the OpenAPI schema states every status the API can return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "malformed request body (e.g. broken multipart framing)",
        401: "missing bearer token",
        403: "forbidden",
        404: "not found",
        405: "method not allowed",
        409: "conflict with a concurrent change",
        413: "request body too large",
        415: "unsupported media type",
        422: "invalid request",
        503: "not ready or a dependency is unavailable",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}


# 400: a body that cannot be parsed at all (Starlette answers 400 to broken multipart framing).
COMMON = errors(400, 413, 422, 503)
