"""A small demo catalogue, generated here (not taken from any benchmark).

Loaded on first start so that a new user can match an offer at once. The products are
invented combinations of brands, product lines and variants; prices are made up.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# (category, brand, line, variants, attribute key, attribute values, base price)
_LINES = [
    (
        "headphones",
        "Sony",
        "WH-1000XM5 Wireless Noise Cancelling Headphones",
        ["Black", "Silver", "Midnight Blue"],
        "colour",
        None,
        349.0,
    ),
    ("headphones", "Bose", "QuietComfort Ultra Headphones", ["Black", "White Smoke"], "colour", None, 379.0),
    ("headphones", "Sennheiser", "Momentum 4 Wireless", ["Black", "White"], "colour", None, 299.0),
    ("smartphones", "Apple", "iPhone 15 Pro", ["128GB", "256GB", "512GB"], "storage", None, 999.0),
    ("smartphones", "Samsung", "Galaxy S24 Ultra", ["256GB", "512GB"], "storage", None, 1199.0),
    ("smartphones", "Google", "Pixel 8 Pro", ["128GB", "256GB"], "storage", None, 899.0),
    (
        "laptops",
        "Lenovo",
        'ThinkPad X1 Carbon Gen 11 14" Laptop',
        ["i5 16GB 512GB", "i7 32GB 1TB"],
        "config",
        None,
        1499.0,
    ),
    ("laptops", "Dell", "XPS 13 Plus 9320 Laptop", ["i7 16GB 512GB", "i7 32GB 1TB"], "config", None, 1399.0),
    ("laptops", "Apple", "MacBook Air 13-inch M3", ["8GB 256GB", "16GB 512GB"], "config", None, 1099.0),
    (
        "cameras",
        "Canon",
        "EOS R6 Mark II Mirrorless Camera",
        ["Body Only", "with RF 24-105mm Lens"],
        "kit",
        None,
        2499.0,
    ),
    (
        "cameras",
        "Nikon",
        "Z6 II Mirrorless Camera",
        ["Body Only", "with 24-70mm f/4 Lens"],
        "kit",
        None,
        1999.0,
    ),
    ("cameras", "Fujifilm", "X-T5 Mirrorless Camera", ["Black", "Silver"], "colour", None, 1699.0),
    ("tv", "LG", "OLED evo C3 Smart TV", ['55"', '65"', '77"'], "size", None, 1499.0),
    ("tv", "Samsung", "Neo QLED QN90C 4K Smart TV", ['55"', '65"'], "size", None, 1599.0),
    ("kitchen", "Philips", "Airfryer XXL HD9650", ["Black"], "colour", None, 249.0),
    (
        "kitchen",
        "KitchenAid",
        "Artisan Stand Mixer 5KSM175",
        ["Empire Red", "Onyx Black", "Almond Cream"],
        "colour",
        None,
        499.0,
    ),
    (
        "kitchen",
        "De'Longhi",
        "Magnifica Evo Bean-to-Cup Coffee Machine",
        ["Black", "Titanium"],
        "colour",
        None,
        599.0,
    ),
    ("storage", "Samsung", "990 PRO NVMe M.2 SSD", ["1TB", "2TB", "4TB"], "capacity", None, 129.0),
    (
        "storage",
        "WD",
        "My Passport Portable External Hard Drive",
        ["2TB", "4TB", "5TB"],
        "capacity",
        None,
        79.0,
    ),
    ("storage", "SanDisk", "Extreme PRO SDXC UHS-I Card", ["64GB", "128GB", "256GB"], "capacity", None, 24.0),
    (
        "gaming",
        "Sony",
        "PlayStation 5 Slim Console",
        ["Disc Edition", "Digital Edition"],
        "edition",
        None,
        499.0,
    ),
    ("gaming", "Nintendo", "Switch OLED Model", ["White", "Neon Red/Blue"], "colour", None, 349.0),
    (
        "gaming",
        "Logitech",
        "G Pro X Superlight 2 Wireless Gaming Mouse",
        ["Black", "White", "Pink"],
        "colour",
        None,
        159.0,
    ),
    ("wearables", "Apple", "Watch Series 9 GPS", ["41mm", "45mm"], "size", None, 399.0),
    (
        "wearables",
        "Garmin",
        "Forerunner 265 GPS Running Smartwatch",
        ["Black", "Whitestone"],
        "colour",
        None,
        449.0,
    ),
    ("home", "Dyson", "V15 Detect Cordless Vacuum Cleaner", ["Yellow/Nickel", "Gold"], "colour", None, 749.0),
    ("home", "iRobot", "Roomba j7+ Robot Vacuum", ["Graphite"], "colour", None, 599.0),
    (
        "home",
        "Philips Hue",
        "White and Color Ambiance E27 Smart Bulb",
        ["1-pack", "2-pack", "3-pack"],
        "pack",
        None,
        49.0,
    ),
    ("audio", "Sonos", "Era 100 Wireless Speaker", ["Black", "White"], "colour", None, 249.0),
    (
        "audio",
        "JBL",
        "Charge 5 Portable Bluetooth Speaker",
        ["Black", "Blue", "Red", "Teal"],
        "colour",
        None,
        179.0,
    ),
    (
        "tools",
        "Bosch",
        "Professional GSR 18V-55 Cordless Drill Driver",
        ["Solo", "with 2x 2.0Ah Batteries"],
        "kit",
        None,
        189.0,
    ),
    ("tools", "Makita", "DHP487Z 18V LXT Brushless Combi Drill", ["Body Only"], "kit", None, 99.0),
]


def demo_products(seed: int = 7) -> list[dict]:
    """Deterministic demo products with external ids `demo-0001` ..."""
    rng = random.Random(seed)
    products: list[dict] = []
    for category, brand, line, variants, attr, _unused, base in _LINES:
        for j, variant in enumerate(variants):
            n = len(products) + 1
            price = round(base * (1 + 0.15 * j) * rng.uniform(0.95, 1.05), 2)
            products.append(
                {
                    "external_id": f"demo-{n:04d}",
                    "title": f"{brand} {line} - {variant}",
                    "brand": brand,
                    "category": category,
                    "price": price,
                    "currency": "EUR",
                    "description": f"{brand} {line}, {attr} {variant}. Demo catalogue item.",
                    "attributes": {attr: variant},
                    "source": "demo",
                }
            )
    return products


def write_demo_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for product in demo_products():
            fh.write(json.dumps(product, ensure_ascii=False) + "\n")
    return path
