"""Serving side of the recommender: label index over the catalogue, query handling, automation flag."""

from __future__ import annotations
