"""How far inference pads a batch: request-sized batches to a multiple of 8 tokens.

oneDNN compiles a kernel for every matrix shape it has not seen, and a served request's shapes
follow its token lengths, so a first-seen length added a compile to that request: in process, the
p99 of 300 five-pair reranks after 30 warm-up calls was 35-40 ms unpadded and 28-30 ms padded to
a multiple of 8 (`docs/benchmarks.md`, session 22). A bulk batch (ingestion, evaluation) meets
few shapes per token and its padding costs FLOPs: a multiple of 8 on 16-token titles is a fifth
more work, so large batches keep their own longest length.
"""

from __future__ import annotations

REQUEST_BATCH_MAX = 16
REQUEST_PAD_MULTIPLE = 8


def pad_multiple(batch_items: int) -> int:
    """The multiple of tokens a batch of ``batch_items`` texts or pairs is padded to."""
    return REQUEST_PAD_MULTIPLE if batch_items <= REQUEST_BATCH_MAX else 1


__all__ = ["REQUEST_BATCH_MAX", "REQUEST_PAD_MULTIPLE", "pad_multiple"]
