"""MaxScore document-at-a-time top-k over the compact BM25 base, compiled with numba.

Turtle & Flood's MaxScore (1995), as search engines run it (e.g. PISA's ``maxscore_query``):
the query's terms are ordered by their upper bound; the terms whose bounds together cannot
reach the current threshold (the m-th best score so far) are *non-essential*, so only
documents in the postings of the other, *essential* terms are visited, in row order. A visited
document takes its essential terms' contributions, then the non-essential terms' by a galloping
search in their postings, highest bound first, and is dropped as soon as its partial score plus
the bounds left falls below the threshold. As the threshold rises, more terms turn non-essential
and whole postings are skipped.

The threshold first comes from the documents of the rarest, highest-bound terms (their postings
are short and their documents usually rank high), scored in full from the forward index before
the main pass, which then skips them. Bounds are compared with a relative margin (``safe``): the kernel returns every
live row that could tie into the top m, the caller rescores those exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NO_ROW = np.iinfo(np.int64).max


@njit(cache=True, nogil=True, inline="always")
def _gallop(indices: np.ndarray, lo: int, hi: int, row: int) -> int:
    """The first position in ``indices[lo:hi]`` (ascending) holding a row >= ``row``."""
    # Short hops (the common case: a dense term, rows visited in order) by a linear scan.
    for _ in range(8):
        if lo >= hi or indices[lo] >= row:
            return lo
        lo += 1
    if lo >= hi or indices[lo] >= row:
        return lo
    # Here indices[lo] < row: double the step until past it, then halve back.
    step = 1
    prev = lo
    probe = lo + 1
    while probe < hi and indices[probe] < row:
        prev = probe
        step *= 2
        probe = lo + step
    if probe > hi:
        probe = hi
    lo, hi = prev + 1, probe
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _push(heap: np.ndarray, size: int, score: float) -> int:
    """Keep the ``len(heap)`` largest scores in a min-heap; returns the new size."""
    cap = heap.shape[0]
    if size < cap:
        i = size
        heap[i] = score
        while i > 0:
            parent = (i - 1) // 2
            if heap[parent] <= heap[i]:
                break
            heap[parent], heap[i] = heap[i], heap[parent]
            i = parent
        return size + 1
    if score <= heap[0]:
        return size
    heap[0] = score
    i = 0
    while True:
        left = 2 * i + 1
        smallest = i
        if left < cap and heap[left] < heap[smallest]:
            smallest = left
        if left + 1 < cap and heap[left + 1] < heap[smallest]:
            smallest = left + 1
        if smallest == i:
            return size
        heap[smallest], heap[i] = heap[i], heap[smallest]
        i = smallest


@njit(cache=True, nogil=True)
def maxscore_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    tf: np.ndarray,
    posting_len: np.ndarray,
    fwd_indptr: np.ndarray,
    fwd_terms: np.ndarray,
    fwd_tf: np.ndarray,
    lengths: np.ndarray,
    alive: np.ndarray,
    tids: np.ndarray,
    weights: np.ndarray,
    bounds: np.ndarray,
    norm_len: float,
    norm_base: float,
    m: int,
    seed_budget: int,
    safe: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Live rows that may be in the top ``m``, with their partial-order sums (for the caller to rescore).

    ``tids``, ``weights`` and ``bounds`` are ordered by ascending bound.
    """
    n = tids.shape[0]
    upper = np.cumsum(bounds)  # upper[i]: the most a row can take from terms 0..i
    start = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    for i in range(n):
        start[i] = indptr[tids[i]]
        end[i] = indptr[tids[i] + 1]
    heap = np.empty(m, dtype=np.float64)
    size = 0
    threshold = 0.0
    out_rows = np.empty(max(4 * m, 64), dtype=np.int64)
    out_scores = np.empty(out_rows.shape[0], dtype=np.float64)
    n_out = 0

    # Seed: every row of the highest-bound terms whose postings fit the budget, scored in full.
    seed_from = n
    used = 0
    while seed_from > 0 and used + (end[seed_from - 1] - start[seed_from - 1]) <= seed_budget:
        seed_from -= 1
        used += int(end[seed_from] - start[seed_from])
    seed = np.empty(used, dtype=np.int64)
    k = 0
    for i in range(seed_from, n):
        for p in range(start[i], end[i]):
            seed[k] = indices[p]
            k += 1
    seed = np.unique(seed)
    for s in range(seed.shape[0]):
        row = seed[s]
        if not alive[row]:
            continue
        # From the forward index: a row's own terms are fewer than galloping through every posting.
        score = 0.0
        length = lengths[row]
        for e in range(fwd_indptr[row], fwd_indptr[row + 1]):
            term = fwd_terms[e]
            for i in range(n):
                if tids[i] == term:
                    score += weights[i] * fwd_tf[e] / (fwd_tf[e] + (length * norm_len + norm_base))
                    break
        size = _push(heap, size, score)
        if size == m:
            threshold = heap[0]
        if n_out == out_rows.shape[0]:
            out_rows = np.concatenate((out_rows, np.empty_like(out_rows)))
            out_scores = np.concatenate((out_scores, np.empty_like(out_scores)))
        out_rows[n_out] = row
        out_scores[n_out] = score
        n_out += 1

    # Main pass over the essential terms' rows, in row order, skipping the seeds.
    essential = 0
    while essential < n and upper[essential] * safe < threshold:
        essential += 1
    pos = start.copy()
    # cur[i]: the row under term i's cursor (_NO_ROW past its end), kept in a small array.
    cur = np.empty(n, dtype=np.int64)
    for i in range(n):
        cur[i] = indices[pos[i]] if pos[i] < end[i] else _NO_ROW
    next_seed = 0
    row = _NO_ROW
    for i in range(essential, n):
        if cur[i] < row:
            row = cur[i]
    while essential < n and row != _NO_ROW:
        score = 0.0
        following = _NO_ROW
        for i in range(essential, n):
            if cur[i] == row:
                p = pos[i]
                score += weights[i] * tf[p] / (tf[p] + (posting_len[p] * norm_len + norm_base))
                p += 1
                pos[i] = p
                cur[i] = indices[p] if p < end[i] else _NO_ROW
            if cur[i] < following:
                following = cur[i]
        while next_seed < seed.shape[0] and seed[next_seed] < row:
            next_seed += 1
        keep = alive[row] and not (next_seed < seed.shape[0] and seed[next_seed] == row)
        if keep:
            for i in range(essential - 1, -1, -1):
                if (score + upper[i]) * safe < threshold:
                    keep = False
                    break
                if cur[i] < row:
                    p = _gallop(indices, pos[i], end[i], row)
                    pos[i] = p
                    cur[i] = indices[p] if p < end[i] else _NO_ROW
                if cur[i] == row:
                    p = pos[i]
                    score += weights[i] * tf[p] / (tf[p] + (posting_len[p] * norm_len + norm_base))
        if keep and (size < m or score * safe >= threshold):
            size = _push(heap, size, score)
            if n_out == out_rows.shape[0]:
                out_rows = np.concatenate((out_rows, np.empty_like(out_rows)))
                out_scores = np.concatenate((out_scores, np.empty_like(out_scores)))
            out_rows[n_out] = row
            out_scores[n_out] = score
            n_out += 1
            if size == m and heap[0] > threshold:
                threshold = heap[0]
                while essential < n and upper[essential] * safe < threshold:
                    essential += 1
        row = following
    keep_out = out_scores[:n_out] * safe >= threshold
    return out_rows[:n_out][keep_out], out_scores[:n_out][keep_out]
