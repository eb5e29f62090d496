"""Time FAISS's IVF-PQ training for the installed faiss-cpu (the 1M first build's largest phase).

Seeded clustered unit vectors (2,000 centres + noise, 384 dims), the service's index string
at a smaller nlist. Run it under several virtual environments to compare faiss releases:

    <venv>/bin/python benchmarks/bench_index_train.py --n 65536 --nlist 1000
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--nlist", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((2000, 384)).astype("float32")
    x = centres[rng.integers(0, 2000, args.n)] + 0.5 * rng.standard_normal((args.n, 384)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    timings = {}
    for name, key in (("ivfpq_refine", f"IVF{args.nlist},PQ48x8np,RFlat"), ("ivf_only", f"IVF{args.nlist},Flat")):
        index = faiss.index_factory(384, key, faiss.METRIC_INNER_PRODUCT)
        started = time.perf_counter()
        index.train(x)
        timings[f"{name}_train_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        index.add(x)
        timings[f"{name}_add_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps({"faiss": faiss.__version__, **vars(args), **timings}))


if __name__ == "__main__":
    main()
