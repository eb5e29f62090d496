"""The benchmarks' ``--env KEY=VALUE`` parsing: a server setting reaches the server as written."""

from __future__ import annotations

import pytest

from benchmarks.common import parse_env


def test_parse_env_keeps_values_with_equals_signs() -> None:
    assert parse_env(["SCORER=default", "DEFAULT_MATCHER=/a=b", "EMPTY="]) == {
        "SCORER": "default",
        "DEFAULT_MATCHER": "/a=b",
        "EMPTY": "",
    }


@pytest.mark.parametrize("item", ["SCORER", "=value"])
def test_parse_env_rejects_malformed_items(item: str) -> None:
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_env([item])
