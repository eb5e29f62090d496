"""Shared schema types, and the base of every JSON request body."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

NUL = "\x00"
NUL_MESSAGE = "must not contain NUL characters (\\u0000)"


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _strip(value: str) -> str:
    return value.strip()


# Surrounding whitespace is removed *after* the string's own constraints (length, pattern) are
# checked on the value as sent, so a limit means what the OpenAPI schema says it means: a title
# of 2,001 characters is refused even when some of them are spaces. Put it after the constraints:
# `Annotated[str, StringConstraints(max_length=...), STRIP]`. (pydantic's str_strip_whitespace
# strips first, so a padded over-long value passed while the schema calls it invalid.)
STRIP = AfterValidator(_strip)


def find_nul(value: Any, where: str = "") -> str | None:
    """Where a NUL character sits in a str / list / dict value ("" = the value itself), else None.

    PostgreSQL text refuses NUL and no product text needs one, so requests carrying one are
    refused up front instead of failing in the database. Nested models check themselves.
    """
    if isinstance(value, str):
        return where if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and NUL in key:
                return path
            found = find_nul(item, path)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            found = find_nul(item, f"{where}[{n}]" if where else f"[{n}]")
            if found is not None:
                return found
    return None


def nul_error(where: str) -> str:
    return f"{NUL_MESSAGE} (at {where})" if where else NUL_MESSAGE


class RequestModel(BaseModel):
    """Base of the JSON request bodies: unknown fields are refused, and so are wrong types.

    Strict mode: no coercion, so `"3"` is not an integer, `true` is not a number and `"yes"`
    is not a boolean (an integer is still a valid float). No text anywhere in the body may
    contain a NUL character. File rows (CSV cells are text) relax strictness in subclasses.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        where = find_nul(value)
        if where is not None:
            raise ValueError(nul_error(where))
        return value
