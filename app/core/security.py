"""Admin bearer-token check, constant-time."""

from __future__ import annotations

import hmac


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
