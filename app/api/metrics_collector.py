"""Gauges read at scrape time: index size/version and job counts by state."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.db.jobs import counts_by_kind_and_state
from app.services import Services

logger = logging.getLogger(__name__)


class ServiceCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("productmatch_index_vectors", "Vectors in the search index")
        version = GaugeMetricFamily("productmatch_index_version", "Change-log sequence applied to the index")
        index = self.services.index
        size.add_metric([], float(len(index.index)) if index else 0.0)
        version.add_metric([], float(index.index.version) if index else 0.0)
        yield size
        yield version
        jobs = GaugeMetricFamily("productmatch_jobs", "Jobs by kind and state", labels=["kind", "state"])
        try:
            for kind, state, count in counts_by_kind_and_state(self.services.factory):
                jobs.add_metric([kind, state], float(count))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the DB blinked
            logger.warning("could not count jobs for /metrics", exc_info=True)
        yield jobs
