"""Bulk-match jobs and the review queue: a choice made per job (`review` in its payload).

By default a bulk job does not feed the review queue: its result file already holds every
decision, and a feed of a million offers could bury the queue. With `review=true` the job, once
its result file is complete, streams the file beside the feed and queues each `review`
decision like `/v1/match` does, one open item per (offer, candidate set): a redelivered job
queues nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice
from typing import Any

from app.db import jobs
from app.db import products as repo
from app.db.review_queue import queue_for_review
from app.db.tables import Job
from app.jobs.context import JobContext
from app.jobs.match_feed.ray_engine import run_ray
from app.jobs.match_feed.reader import iter_feed, to_offer
from app.jobs.match_feed.runner import FeedJob, run_match_feed
from app.jobs.match_feed.writer import iter_results
from app.pipeline.scoring import REVIEW

logger = logging.getLogger(__name__)

BATCH = 500  # review decisions per database round trip


def _review_rows(feed: FeedJob) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(result row, the feed's offer for it) for each `review` decision, in feed order."""
    offers = iter_feed(feed.path, feed.format)
    for result in iter_results(feed.output_path, BATCH):
        if result["decision"] != REVIEW:
            continue
        for _, raw in offers:  # result rows follow the feed's order: walk the feed up to this one
            if raw.number == result["row"]:
                parsed = to_offer(raw, feed.format)
                if parsed.offer is not None:
                    yield result, parsed.offer
                break


def _titles(ctx: JobContext, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    with ctx.factory() as session:
        return repo.titles_by_external_id(session, ids)


def queue_feed_reviews(ctx: JobContext, job: Job, model_versions: dict[str, Any]) -> int:
    """Queue the `review` decisions of a finished job's result file; returns how many were new."""
    feed = FeedJob.from_job(job)
    if not feed.output_path.exists() or not feed.path.exists():
        logger.warning("job %s: result or feed file gone, no review items queued", job.id)
        return 0
    added = 0
    pairs = _review_rows(feed)
    while batch := list(islice(pairs, BATCH)):
        titles = _titles(ctx, {ext for result, _ in batch for ext in result["candidate_ids"]})
        items = [
            {
                "offer": offer,
                "offer_external_id": result["offer_id"],
                "candidates": [
                    {"external_id": ext, "title": titles.get(ext), "score": score}
                    for ext, score in zip(result["candidate_ids"], result["candidate_scores"])
                ],
                "top_score": result["top_score"],
                "model_versions": model_versions,
            }
            for result, offer in batch
        ]
        added += queue_for_review(ctx.factory, items)
    return added


def run_match_feed_job(ctx: JobContext, job: Job) -> str:
    """The bulk-match job, then (with `review` in its payload) its review decisions queued."""
    state = run_match_feed(ctx, job, run_ray)
    if (job.payload or {}).get("review"):
        current = jobs.get_job(ctx.factory, job.id)
        versions = ((current.timings if current else None) or {}).get("model_versions") or {}
        added = queue_feed_reviews(ctx, job, versions)
        logger.info("job %s: %d review decisions queued (duplicates of open items skipped)", job.id, added)
    return state
