"""Checks on the parts of a request that pydantic models do not see: path and query parameters
(NUL characters, a single-valued query parameter given more than once) and multipart /
urlencoded forms (unknown, blank, repeated or NUL fields).

FastAPI treats a form field sent empty as a field not sent, and ignores fields it does not
know, so a mistyped or blank filter would silently filter nothing; these checks refuse them
with a 422 that names the field, in the same shape as pydantic's validation errors.
"""

from __future__ import annotations

import types
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile

from app.schemas.common import NUL, NUL_MESSAGE

# A form text field: at least one non-blank character and no NUL (stated in the OpenAPI schema;
# the check below gives the clearer message).
FORM_TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _error(where: str, name: str, msg: str) -> dict[str, Any]:
    return {"loc": (where, name), "msg": msg, "type": "value_error", "input": None}


async def no_nul_in_params(request: Request) -> None:
    """Path and query parameters must not contain NUL (PostgreSQL text cannot hold one)."""
    errors = [
        _error("path", name, NUL_MESSAGE)
        for name, value in request.path_params.items()
        if isinstance(value, str) and NUL in value
    ]
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            errors.append(_error("query", name, NUL_MESSAGE))
    if errors:
        raise RequestValidationError(errors)


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's type is a collection (a query parameter that may be repeated)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_takes_many(arg) for arg in get_args(annotation) if arg is not type(None))
    return isinstance(origin, type) and issubclass(origin, (list, tuple, AbstractSet))


def _query_fields(dependant: Any) -> Iterator[Any]:
    """The query parameters of a route's dependant and of all its sub-dependencies."""
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


async def no_repeated_query_params(request: Request) -> None:
    """A query parameter that takes one value must be given once: FastAPI would silently keep
    the last of `?kind=a&kind=b`. List-typed parameters (none at present) may repeat."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    single = {field.alias for field in _query_fields(dependant) if not _takes_many(field.field_info.annotation)}
    counts = Counter(name for name, _ in request.query_params.multi_items())
    errors = [
        _error("query", name, f"given {n} times; a single value is expected")
        for name, n in counts.items()
        if n > 1 and name in single
    ]
    if errors:
        raise RequestValidationError(errors)


def form_fields(*text: str, files: tuple[str, ...] = ("file",)) -> Callable[[Request], Awaitable[None]]:
    """A dependency that accepts only the named form fields, each at most once.

    Text fields must not be blank and must not contain NUL; file fields must be uploads.
    """
    accepted = sorted({*text, *files})

    async def check(request: Request) -> None:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return
        form = await request.form()  # FastAPI has parsed it already: this is the cached form
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for name, value in form.multi_items():
            if name not in accepted:
                errors.append(_error("body", name, f"unknown form field; the accepted fields are {accepted}"))
                continue
            if name in seen:
                errors.append(_error("body", name, "given more than once"))
                continue
            seen.add(name)
            if name in files:
                if not isinstance(value, UploadFile):
                    errors.append(_error("body", name, "must be a file upload"))
            elif isinstance(value, UploadFile):
                errors.append(_error("body", name, "must be a text field, not a file"))
            elif NUL in value:
                errors.append(_error("body", name, NUL_MESSAGE))
            elif not value.strip():
                errors.append(_error("body", name, "must not be blank (leave the field out instead)"))
        if errors:
            raise RequestValidationError(errors)

    return check


FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def close_form_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """State in the OpenAPI schema what `form_fields` enforces: form bodies take no other fields."""
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = (operation.get("requestBody") or {}).get("content", {}) if isinstance(operation, dict) else {}
            for media in FORM_MEDIA_TYPES:
                ref = (content.get(media) or {}).get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                if ref.startswith("#/components/schemas/") and name in components:
                    components[name]["additionalProperties"] = False
    return schema


def install_closed_forms(app: FastAPI) -> None:
    """Post-process the generated OpenAPI schema once (FastAPI caches it on the app)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = close_form_schemas(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
