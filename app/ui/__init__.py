"""The web UI: plain HTML pages and vanilla JavaScript calling the JSON API, served under /ui."""

from __future__ import annotations
