"""The default recipe's data side: sources, mixture balancing, exclusion, attribute dropout,
hard-negative mining, pooled validation, max length, licences."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from models.backbones import backbone_path
from models.bi_encoder import BiEncoder
from tests.training.default_recipe_fixtures import SOURCES, TINY, tiny_config, write_all
from training.data.readers import load_dataset
from training.default_recipe.config import DEFAULT_SOURCES, DropoutConfig, RecipeConfig, budget_config
from training.default_recipe.dropout import drop_attributes
from training.default_recipe.lengths import choose_max_length
from training.default_recipe.mining import mine_hard_negatives
from training.default_recipe.mixture import Mixture, pooled_validation, quotas, source_weights
from training.default_recipe.sources import (
    clean_lspc_title,
    clusters_agree,
    licences,
    load_source,
    load_sources,
    parse_price,
    source_from_dataset,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all(tmp_path_factory.mktemp("recipe-data"))


@pytest.fixture(scope="module")
def encoder() -> BiEncoder:
    import torch

    torch.manual_seed(0)
    return BiEncoder.from_config(TINY)


# ------------------------------------------------------------------------------ mixture


def test_quotas_follow_size_power_and_sum_to_total() -> None:
    q = quotas({"a": 100, "b": 400, "c": 1600}, total=700, alpha=0.5, max_share=1.0, max_repeats=10)
    assert sum(q.values()) == 700
    assert q == {"a": 100, "b": 200, "c": 400}  # sqrt sizes 10 : 20 : 40


def test_quota_caps_are_redistributed() -> None:
    q = quotas({"a": 100, "b": 400, "c": 1600}, total=700, alpha=0.5, max_share=0.4, max_repeats=10)
    assert q["c"] == 280  # capped at 40 %
    assert sum(q.values()) == 700 and q["b"] == 2 * q["a"]  # the rest keeps the sqrt ratio
    small = quotas({"tiny": 10, "big": 10_000}, total=1000, alpha=0.5, max_share=1.0, max_repeats=2)
    assert small["tiny"] == 20 and small["big"] == 980  # a tiny source is repeated at most twice


def test_no_source_dominates_the_default_mixture() -> None:
    sizes = {"abt": 5743, "ag": 6874, "comp": 6332, "cam": 15092, "shoes": 18068, "watch": 4902, "wdcp": 6000,
             "block": 16956}  # fmt: skip
    q = quotas(sizes, 84_000, 0.5, 0.25, 3.0)
    shares = {k: v / 84_000 for k, v in q.items()}
    assert max(shares.values()) < 0.2 and min(shares.values()) > 0.08
    proportional = {k: v / sum(sizes.values()) for k, v in sizes.items()}
    assert shares["shoes"] < proportional["shoes"] and shares["watch"] > proportional["watch"]


def test_mixture_epochs_are_balanced_and_reproducible(root: Path) -> None:
    sources = load_sources(SOURCES, root)
    mix = Mixture.build(sources, {}, 60, alpha=0.5, max_share=1.0, max_repeats=10, hard_negative_share=0.2, seed=3)
    e1, again, e2 = mix.epoch(1), mix.epoch(1), mix.epoch(2)
    assert e1 == again and e1 != e2
    assert Counter(p.source for p in e1) == Counter(mix.quota)
    assert len(e1) == 60


def test_exclude_drops_derived_sources_and_rejects_unknown_names() -> None:
    cfg = RecipeConfig(exclude=("wdc-products",))
    names = {s.name for s in cfg.active_sources()}
    assert "wdc-products" not in names and "wdc-block-small" not in names and "abt-buy" in names
    assert len(names) == len(DEFAULT_SOURCES) - 2
    assert {s.name for s in RecipeConfig(exclude=("abt-buy",)).active_sources()} == {
        s.name for s in DEFAULT_SOURCES
    } - {"abt-buy"}
    with pytest.raises(ValueError, match="unknown sources"):
        RecipeConfig(exclude=("no-such-benchmark",))
    assert budget_config("smoke", exclude=("abt-buy",)).epochs == 1


# ------------------------------------------------------------------------------ sources


def test_sources_map_onto_service_fields(root: Path) -> None:
    dm, lspc, wdcp = load_sources(SOURCES, root)
    product = dm.train[0].right
    assert set(product) == {"title", "brand", "category", "price", "description"}
    assert isinstance(dm.train[0].left["price"], float)
    assert all('"' not in p.left["title"] and "@en" not in p.left["title"] for p in lspc.train)
    assert lspc.train[0].left["category"] == "cameras"
    assert wdcp.left_clusters is not None  # clusters agree with the labels: mining allowed
    assert dm.left_clusters is None and lspc.left_clusters is None


def test_price_and_title_cleanup() -> None:
    assert parse_price("$1,299.00") == 1299.0 and parse_price("12") == 12.0
    assert parse_price(None) is None and parse_price("n/a") is None
    raw = '"Sony A7 III"@en, " Sony Body "@en-US Prices - CNET"@en'
    assert clean_lspc_title(raw) == "Sony A7 III , Sony Body Prices - CNET"


def test_licences_read_from_sources_md(tmp_path: Path) -> None:
    md = tmp_path / "SOURCES.md"
    md.write_text(
        "| local | repo | path | commit | licence |\n|---|---|---|---|---|\n"
        "| `abt-buy/*.csv` | r | p | c | BSD-3-Clause. The data is X |\n"
        "| `abt-buy/ditto/*.txt` | r | p | c | Apache-2.0 |\n"
    )
    assert licences(md) == {"abt-buy": "BSD-3-Clause; Apache-2.0"}


# ------------------------------------------------------------------------------ dropout


def _product() -> dict[str, object]:
    return {"title": "XM5 headphones", "brand": "Sony", "category": "audio", "price": 299.0, "description": "d"}


def test_dropout_keeps_the_title_and_can_leave_only_it() -> None:
    rng = random.Random(0)
    only = drop_attributes(_product(), DropoutConfig(p_title_only=1.0), rng)
    assert only == {"title": "XM5 headphones", "brand": None, "category": None, "price": None, "description": None}
    none = drop_attributes(_product(), DropoutConfig(0.0, 0.0, 0.0), rng)
    assert none == _product()


def test_dropout_moves_the_brand_into_the_title() -> None:
    moved = drop_attributes(_product(), DropoutConfig(0.0, 0.0, 1.0), random.Random(0))
    assert moved["title"] == "Sony XM5 headphones" and moved["brand"] is None
    kept = dict(_product(), title="sony XM5")
    assert drop_attributes(kept, DropoutConfig(0.0, 0.0, 1.0), random.Random(0))["brand"] == "Sony"


def test_dropout_rates_and_determinism() -> None:
    cfg = DropoutConfig(p_title_only=0.2, p_field=0.3, p_brand_in_title=0.0)
    draws = [drop_attributes(_product(), cfg, random.Random(i)) for i in range(2000)]
    again = [drop_attributes(_product(), cfg, random.Random(i)) for i in range(2000)]
    assert draws == again
    missing_price = sum(d["price"] is None for d in draws) / len(draws)
    assert abs(missing_price - (0.2 + 0.8 * 0.3)) < 0.04
    assert all(d["title"] == "XM5 headphones" for d in draws)


# ------------------------------------------------------------------------------ mining


def test_mining_never_adds_a_known_match(root: Path, encoder: BiEncoder) -> None:
    wdcp = load_source(SOURCES[2], root)
    mined = mine_hard_negatives(wdcp, encoder, k=6, per_record=3)
    assert mined, "the tiny catalogue has confusable neighbours"
    given = {(p.left_id, p.right_id) for p in wdcp.train}
    assert wdcp.left_clusters is not None and wdcp.right_clusters is not None
    for p in mined:
        assert p.label == 0 and p.source == "tiny-wdcp"
        assert wdcp.left_clusters[p.left_id] != wdcp.right_clusters[p.right_id]
        assert (p.left_id, p.right_id) not in given
    train_ids = {p.right_id for p in wdcp.train}
    assert {p.right_id for p in mined} <= train_ids  # no validation or test record
    assert max(Counter(p.left_id for p in mined).values()) <= 3


def test_no_mining_without_complete_clusters(root: Path, encoder: BiEncoder) -> None:
    dm = load_source(SOURCES[0], root)
    assert mine_hard_negatives(dm, encoder) == []
    dataset = load_dataset(root / "wdcp", "wdc-products", train_size="medium", valid_size="medium", test=None)
    # Every training pair relabelled a match: the clusters no longer tell the matches.
    relabelled = [dataclasses.replace(p, label=1) for p in dataset.split("train")]
    bad = dataclasses.replace(dataset, splits={**dataset.splits, "train": relabelled})
    assert clusters_agree(dataset.split("train")) and not clusters_agree(bad.split("train"))
    source = source_from_dataset(bad, SOURCES[2])
    assert source.left_clusters is None and mine_hard_negatives(source, encoder) == []


# ------------------------------------------------------------------------------ validation, lengths


def test_pooled_validation_is_balanced(root: Path) -> None:
    sources = load_sources(SOURCES, root)
    valid = pooled_validation(sources, per_source=8)
    counts = Counter(p.source for p in valid)
    assert set(counts.values()) == {8}
    assert all(sum(p.label for p in valid if p.source == s) >= 1 for s in counts)
    weights = source_weights([p.source for p in valid] + ["extra"] * 2)
    per_source = Counter()
    for s, w in zip([p.source for p in valid] + ["extra"] * 2, weights):
        per_source[s] += w
    assert len({round(v, 9) for v in per_source.values()}) == 1


def test_max_length_from_token_lengths(root: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(backbone_path("minilm"))
    pairs = [p for s in load_sources(SOURCES, root) for p in s.train]
    cfg = tiny_config()
    length, report = choose_max_length(tokenizer, pairs, cfg.fields, 0.95, description_tokens=32, cap=512)
    assert length % 32 == 0 and length == report["max_length"]
    assert report["without_description"]["p95"] <= length - 32
    capped, _ = choose_max_length(tokenizer, pairs, cfg.fields, 0.95, description_tokens=32, cap=48)
    assert capped == 48
