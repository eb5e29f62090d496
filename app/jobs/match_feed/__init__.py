"""The bulk-matching job: match every offer of a feed file, chunk by checkpointed chunk.

Memory stays flat however long the feed is: the feed is read row by row, one chunk of
`chunk_rows` offers is matched at a time, and each chunk's results go to a part file before
the chunk's checkpoint, counters and row errors are committed in one transaction. A worker
killed anywhere therefore resumes at the first uncommitted chunk and rewrites its part file
under the same name, so the final file, made by concatenating the parts in order, holds every
feed row exactly once. Chunks are numbered by row position (chunk i = rows i*R..(i+1)*R-1) and R
is fixed in the job payload, so every attempt, on any worker, cuts the feed the same way.

A first pass over the feed counts its rows and records the byte offset where each chunk
starts: a resumed job seeks straight to its checkpoint, and the Ray engine hands each chunk to
a separate read task (`ray_engine.py`).

Modules: `reader.py` (the feed's checks, its first pass, rows as offers), `runner.py` (the job:
chunks matched and committed in order, the local engine), `writer.py` (part files and the
result file), `ray_engine.py` (the same chunks on Ray) and `review.py` (the job's handler:
the run, then its review decisions queued when the payload asks).
"""
