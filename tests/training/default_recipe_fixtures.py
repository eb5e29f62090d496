"""Tiny benchmarks in three reader formats (DeepMatcher CSV, Ditto txt, WDC Products json.gz) and
the recipe config that trains a tiny random model on them."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

from training.default_recipe.config import DropoutConfig, RecipeConfig, SourceSpec

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
THINGS = ["microwave", "toaster", "television", "headphones", "keyboard", "camera", "speaker"]


def _products(rng: random.Random, n: int) -> list[tuple[str, str, str, float]]:
    return [
        (
            rng.choice(BRANDS),
            rng.choice(THINGS),
            f"{rng.choice('abxyz')}{rng.randint(100, 999)}",
            rng.randint(5, 900) + 0.99,
        )
        for _ in range(n)
    ]


def write_deepmatcher(folder: Path, seed: int = 0, n_products: int = 30) -> None:
    """Abt-Buy-like: tableA (name, description, price), tableB, splits of id pairs."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    products = _products(rng, n_products)
    with (folder / "tableA.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "description", "price"])
        for i, (b, t, m, p) in enumerate(products):
            w.writerow([i, f"{b} {t} {m}", f"a {t} by {b}, model {m}", p])
    with (folder / "tableB.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "description", "price"])
        for i, (b, t, m, p) in enumerate(products):
            w.writerow([i, f"{b.title()} {m.upper()} {t}", "", f"${p:.2f}" if i % 2 else ""])
    ids = list(range(n_products))
    for split, lo, hi in (("train", 0, 18), ("valid", 18, 24), ("test", 24, 30)):
        with (folder / f"{split}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ltable_id", "rtable_id", "label"])
            for i in ids[lo:hi]:
                w.writerow([i, i, 1])
                for j in rng.sample([k for k in ids if k != i], 2):
                    w.writerow([i, j, 0])


def write_ditto(folder: Path, seed: int = 1, n_products: int = 24) -> None:
    """WDC-LSPC-like: title-only Ditto lines with "@en artefacts, sized train/valid files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    products = _products(rng, n_products)

    def line(a: int, b: int, label: int) -> str:
        left = products[a]
        right = products[b]
        return (
            f'COL title VAL  "{left[0]} {left[1]} {left[2]}"@en\t'
            f'COL title VAL  "{right[0].upper()} {right[2]} - {right[1]}"@en-US\t{label}\n'
        )

    for name, lo, hi in (("train.txt.small", 0, 14), ("valid.txt.small", 14, 19), ("test.txt", 19, 24)):
        with (folder / name).open("w") as fh:
            for i in range(lo, hi):
                fh.write(line(i, i, 1))
                fh.write(line(i, rng.choice([k for k in range(n_products) if k != i]), 0))


def write_wdc_products(folder: Path, seed: int = 2, n_clusters: int = 24) -> None:
    """WDC-Products-like: offers with cluster ids, pairs agreeing with the clusters."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    products = _products(rng, n_clusters)
    counter = iter(range(10**6))

    def offer(cluster: int, style: int) -> dict[str, object]:
        b, t, m, p = products[cluster]
        title = f"{b} {t} {m}" if style == 0 else f"{m.upper()} {t} ({b})"
        return {"id": next(counter), "brand": b if style == 0 else None, "title": title,
                "description": f"{t} {m}" if style else None, "price": f"{p:.2f}", "priceCurrency": "USD",
                "cluster_id": 1000 + cluster}  # fmt: skip

    def write(name: str, clusters: range) -> None:
        rows = []
        for c in clusters:
            left, right = offer(c, 0), offer(c, 1)
            other = offer(rng.choice([k for k in clusters if k != c]), 1)
            for r, label in ((right, 1), (other, 0)):
                row = {f"{k}_left": v for k, v in left.items()} | {f"{k}_right": v for k, v in r.items()}
                rows.append(row | {"pair_id": f"{left['id']}#{r['id']}", "label": label, "is_hard_negative": False})
        with gzip.open(folder / name, "wt") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")

    write("tiny000un_train_medium.json.gz", range(0, 14))
    write("tiny000un_valid_medium.json.gz", range(14, 19))
    write("tiny100un_gs.json.gz", range(19, 24))


def write_all(root: Path) -> Path:
    write_deepmatcher(root / "dm")
    write_ditto(root / "lspc")
    write_wdc_products(root / "wdcp")
    return root


SOURCES = (
    SourceSpec(
        "tiny-dm",
        "dm",
        "deepmatcher",
        {"title": "name", "description": "description", "price": "price"},
        unique_products=True,
    ),
    SourceSpec(
        "tiny-lspc",
        "lspc",
        "ditto",
        {"title": "title"},
        {"size": "small"},
        category="cameras",
        title_cleanup="wdc-lspc",
    ),
    SourceSpec(
        "tiny-wdcp",
        "wdcp",
        "wdc-products",
        {"title": "title", "brand": "brand", "description": "description", "price": "price"},
        {"train_size": "medium", "valid_size": "medium", "test": None},
        complete_clusters=True,
    ),
)


def tiny_config(**overrides: object) -> RecipeConfig:
    base = RecipeConfig(
        sources=SOURCES,
        pairs_per_epoch=48,
        epochs=2,
        batch_size=16,
        valid_per_source=12,
        tiny_config=TINY,
        max_length_cap=64,
        mining_k=4,
        negatives_per_record=1,
        dropout=DropoutConfig(),
        threads=1,
        head_folds=2,
    )
    return base.with_overrides(**overrides)
