"""List the test queries a blocker misses at K: the query, its labelled match, what ranked above.

    .venv/bin/python scripts/blocking_misses.py --data amazon-google --format deepmatcher \
        --model benchmarks/out/blocker-models/amazon-google-block-scl-wise-seed1 --k 20

Without ``--model`` it inspects the packaged zero-shot MiniLM (max length 256, as the blocking
benchmark scores it). The same task as ``productmatch eval blocker`` (METHODS §9.5): one query
per positive test pair, the whole right table as the corpus, exact inner product. Error
analysis for recall targets that a handful of queries decide.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bi_encoder import BiEncoder  # noqa: E402
from training.blocking_tasks import build_blocking_task  # noqa: E402
from training.data.readers import data_root, load_dataset  # noqa: E402


def misses(model: BiEncoder, data: str, fmt: str, split: str, k: int, show: int) -> list[dict]:
    folder = Path(data) if Path(data).is_dir() else data_root() / data
    task = build_blocking_task(load_dataset(folder, fmt), split)
    scores = model.encode(task.queries) @ model.encode(task.corpus).T
    for i, banned in enumerate(task.query_exclude or []):
        scores[i, list(banned)] = -np.inf
    out = []
    for i, targets in enumerate(task.query_targets):
        order = np.argsort(-scores[i], kind="stable")
        ranks = {t: int(np.flatnonzero(order == t)[0]) + 1 for t in targets}
        best = min(ranks.values())
        if best > k:
            out.append(
                {
                    "rank": best,
                    "query": task.queries[i],
                    "targets": [task.corpus[t] for t in targets],
                    "above": [{"score": round(float(scores[i, j]), 4), "text": task.corpus[j]} for j in order[:show]],
                }
            )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder, or a name under the data root")
    p.add_argument("--format", default="deepmatcher", choices=["deepmatcher", "ditto", "wdc-products", "wdc-block"])
    p.add_argument("--model", default=None, help="blocker folder (default: zero-shot MiniLM)")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--show", type=int, default=3, help="top-ranked corpus records shown per miss")
    args = p.parse_args()
    model = BiEncoder.from_pretrained(args.model or "minilm", max_length=64 if args.model else 256)
    for row in misses(model, args.data, args.format, args.split, args.k, args.show):
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
