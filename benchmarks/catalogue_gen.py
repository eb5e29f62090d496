"""Synthetic catalogues and offers for speed benchmarks (deterministic per seed).

Titles combine brands, product types, model codes and attributes the way shop feeds do, so
tokenised lengths resemble real titles (about 10-20 word pieces). Offers are noisy rewrites of
catalogue titles (dropped words, reordered words, case changes), each with its true product.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path

BRANDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Aperture",
    "Massive",
    "Gringotts",
    "Oscorp",
    "Duff",
    "Nakatomi",
    "Virtucon",
    "Zorg",
]
TYPES = [
    "Wireless Headphones",
    "Bluetooth Speaker",
    "4K Smart TV",
    "Laptop",
    "Gaming Mouse",
    "Mechanical Keyboard",
    "USB-C Charger",
    "External SSD",
    "Action Camera",
    "Mirrorless Camera",
    "Coffee Machine",
    "Air Fryer",
    "Robot Vacuum",
    "Electric Toothbrush",
    "Smartwatch",
    "Fitness Tracker",
    "Router",
    "Monitor",
    "Tablet",
    "Power Bank",
    "Drill Driver",
    "Hair Dryer",
    "Blender",
    "Microwave Oven",
    "Dash Cam",
]
COLOURS = ["Black", "White", "Silver", "Blue", "Red", "Graphite", "Gold", "Green"]
SIZES = ["32GB", "64GB", "128GB", "256GB", "512GB", "1TB", "2TB", '24"', '27"', '55"', '65"', "1.5L", "18V"]
EXTRAS = ["Pro", "Plus", "Max", "Lite", "Mini", "Ultra", "Gen 2", "Gen 3", "2024 Edition", "Bundle"]


def product(i: int, rng: random.Random) -> dict:
    brand = rng.choice(BRANDS)
    kind = rng.choice(TYPES)
    code = f"{rng.choice('ABCDEFGHJKLMNPRSTVXZ')}{rng.choice('ABCDEFGHJKLMNPRSTVXZ')}-{rng.randint(100, 9999)}"
    parts = [brand, kind, code]
    if rng.random() < 0.6:
        parts.append(rng.choice(EXTRAS))
    if rng.random() < 0.7:
        parts.append(rng.choice(SIZES))
    if rng.random() < 0.8:
        parts.append(rng.choice(COLOURS))
    return {
        "external_id": f"syn-{i:07d}",
        "title": " ".join(parts),
        "brand": brand,
        "category": kind.split()[-1].lower(),
        "price": round(rng.uniform(5, 2500), 2),
        "currency": "EUR",
    }


def catalogue(n: int, seed: int = 0) -> Iterator[dict]:
    rng = random.Random(seed)
    for i in range(n):
        yield product(i, rng)


def offer_for(p: dict, rng: random.Random) -> dict:
    words = p["title"].split()
    if len(words) > 3 and rng.random() < 0.5:
        words.pop(rng.randrange(1, len(words)))
    if rng.random() < 0.3:
        rng.shuffle(words)
    title = " ".join(words)
    return {"title": title.lower() if rng.random() < 0.5 else title}


def write_jsonl(path: Path, rows: Iterator[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_jsonl(args.out, catalogue(args.n, args.seed))
    print(args.out)


if __name__ == "__main__":
    main()
