"""The default matcher recipe's settings: its data sources and its budget, saved in the manifest.

Budget arithmetic (``RecipeConfig`` defaults: LEA MiniLM-L6, bf16, batch 32, on this 2-core CPU).
The serialised pairs are long: five ``COL <field> VAL`` markers per side cost ~40 tokens before
any value, and :func:`training.default_recipe.lengths.choose_max_length` picks 128 on the
shipped data (pairs without descriptions: p95 108 tokens; a quarter of the pairs are cut), so
with random batches nearly every batch pads to 128. Measured on the recipe's own batches
(2026-12-05, one thread, the process holding a full core): 25.8 training pairs/s per core;
``benchmarks/results/train_speed.json`` has two threads at 1.5-1.8x one (LEA at length 64: 93
pairs/s), so plan with 36-41 pairs/s on the two cores of a quiet machine.

* training: 4 epochs x 84,000 pairs = 336,000 pairs / 36-41 pairs/s = 8,200-9,300 s (2 h 17 min
  to 2 h 35 min);
* pooled validation after every epoch: 8 sources x 600 = 4,800 pairs, eval only, < 1 min each;
* reading the 8 benchmarks ~40 s, mining (bi-encoder over ~3,000 WDC Products training offers)
  < 1 min, token lengths of 4,000 pairs a few seconds, the head's cosines and signals on the
  pooled validation ~1 min;

so 2 h 25 min to 2 h 45 min in all, under the 3 h budget on a quiet machine. A shared machine
stretches it: with one core (25.8 pairs/s) the training alone takes 3 h 37 min. A
leave-one-dataset-out run trains the same 336,000 pairs on fewer sources: the same time each.
``--budget smoke`` (:data:`BUDGETS`) runs the whole pipeline on 320 pairs in a few minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from training.data.typos import P_SIDE

#: The service's product fields the matcher reads, in serialisation order: description last, so
#: truncation to ``max_length`` cuts the description and keeps title, brand, category and price.
SERVICE_FIELDS: tuple[str, ...] = ("title", "brand", "category", "price", "description")


@dataclass(frozen=True)
class SourceSpec:
    """One training benchmark: where it is, how its records map onto the service's fields.

    ``field_map``: service field -> the record attribute holding it. ``category``: a category
    every record of the source has (a WDC LSPC category folder), else None. ``title_cleanup``:
    ``"wdc-lspc"`` strips the ``"...\"@en`` artefacts of the raw schema.org titles.
    ``complete_clusters``: the source's cluster ids tell *all* matches of a record (two offers
    match iff they share a cluster), so bi-encoder neighbours in another cluster are safe hard
    negatives; checked against the labels at load time. ``derived_from``: the source was built
    from that one's data (excluding it excludes this one too). ``licence_folder``: the folder
    named in ``SOURCES.md``. ``unique_products``: every product is one record of the right table
    (a catalogue, not a crawl of offers), so a retrieved product that is not an offer's labelled
    match is a non-match (``ranked.py``); elsewhere it is unknown.
    """

    name: str
    path: str
    fmt: str
    field_map: dict[str, str]
    reader_kwargs: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    title_cleanup: str | None = None
    complete_clusters: bool = False
    derived_from: str | None = None
    licence_folder: str = ""
    unique_products: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WDC_FIELDS = {"title": "title", "brand": "brand", "description": "description", "price": "price"}


def _lspc(category: str, size: str) -> SourceSpec:
    return SourceSpec(
        name=f"wdc-lspc-{category}",
        path=f"wdc-lspc-v2/{category}",
        fmt="ditto",
        field_map={"title": "title"},
        reader_kwargs={"size": size},
        category=category,
        title_cleanup="wdc-lspc",
        licence_folder="wdc-lspc-v2",
    )


#: Every product benchmark in the data root with training pairs, largest available train size.
#: ProMap has test files only. WDC LSPC cameras and shoes have a ``large`` train set, computers
#: and watches only ``medium``.
DEFAULT_SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "abt-buy",
        "abt-buy",
        "deepmatcher",
        {"title": "name", "description": "description", "price": "price"},
        licence_folder="abt-buy",
        unique_products=True,
    ),
    SourceSpec(
        "amazon-google",
        "amazon-google",
        "deepmatcher",
        {"title": "title", "brand": "manufacturer", "price": "price"},
        licence_folder="amazon-google",
        unique_products=True,
    ),
    _lspc("computers", "medium"),
    _lspc("cameras", "large"),
    _lspc("shoes", "large"),
    _lspc("watches", "medium"),
    SourceSpec(
        "wdc-products",
        "wdc-products-80cc20rnd",
        "wdc-products",
        dict(_WDC_FIELDS),
        reader_kwargs={"train_size": "medium", "valid_size": "medium", "test": None},
        complete_clusters=True,
        licence_folder="wdc-products-80cc20rnd",
    ),
    # Its cluster ids disagree with its labels for a quarter of the training pairs (checked), so
    # it gets no mined negatives; it was cut from WDC Products 050un, hence derived_from.
    SourceSpec(
        "wdc-block-small",
        "wdc-block-small",
        "wdc-block",
        dict(_WDC_FIELDS),
        derived_from="wdc-products",
        licence_folder="wdc-block-small",
    ),
)


@dataclass(frozen=True)
class DropoutConfig:
    """Attribute dropout, per record side and epoch (``training.default_recipe.dropout``).

    ``p_title_only``: the record keeps its title alone. Otherwise each non-title field is dropped
    with ``p_field``, and a brand missing from the title moves into it with ``p_brand_in_title``.
    """

    p_title_only: float = 0.2
    p_field: float = 0.3
    p_brand_in_title: float = 0.15

    def __post_init__(self) -> None:
        for name in ("p_title_only", "p_field", "p_brand_in_title"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class RecipeConfig:
    """Everything a default-matcher run depends on (see the module docstring for the budget).

    Mixture: every epoch draws ``pairs_per_epoch`` pairs, a source's quota proportional to
    ``size ** alpha`` (size = its training pairs), no source above ``max_share`` of the epoch
    nor above ``max_repeats`` times its own size (the rest goes to the others). Of a source
    with mined negatives, ``hard_negative_share`` of its quota are mined pairs.
    Validation: ``valid_per_source`` pairs (stratified) of each source's validation split.
    ``max_length``: None chooses it from the token lengths of the serialised pairs
    (``length_quantile`` of the pairs without their descriptions, rounded up to 32, plus
    ``description_tokens``, capped at ``max_length_cap``). ``select_epoch``: ``"last"`` keeps
    the final weights (the schedule decays to zero; nothing is chosen on in-domain validation)
    or ``"best-valid"``. Head: logistic regression on the pooled validation with
    ``head_folds``-fold cross-fitted thresholds; ``signals`` names the pair-signal features
    (``"pair_signals"``, ``"pair_signals_v2"`` with the titles' quantity agreement, or
    ``"none"``); ``margin`` adds the margin to the best other candidate; ``head_fit`` fits it
    on the pooled pairs, the ranked lists' judged candidates or both. Match cuts: on the top
    candidate of ``ranked_offers`` validation offers per source, each ranked ``ranked_k`` deep
    like the service ranks, ``ranked_absent_share`` of them with their product taken out of the
    catalogue (``ranked.py``, ``decide.py``).
    """

    sources: tuple[SourceSpec, ...] = DEFAULT_SOURCES
    exclude: tuple[str, ...] = ()
    fields: tuple[str, ...] = SERVICE_FIELDS
    # mixture
    pairs_per_epoch: int = 84_000
    epochs: int = 4
    alpha: float = 0.5
    max_share: float = 0.25
    max_repeats: float = 3.0
    hard_negative_share: float = 0.2
    mining_k: int = 10
    negatives_per_record: int = 3
    valid_per_source: int = 600
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    typo_p_side: float = P_SIDE
    # model and optimiser
    arch: str = "lea"
    backbone: str = "minilm"
    bi_encoder: str = "minilm"
    tiny_config: dict[str, Any] | None = None
    # A default-matcher folder (a release) whose cross-encoder starts the training instead of the
    # pretrained backbone: more epochs on top of a shipped release without repeating its own.
    init: str | None = None
    batch_size: int = 32
    # Batches of similar token length (training/length_grouping.py): 28 % of the tokens were
    # padding with random batches. Held out Abt-Buy, it transferred as well as random batches
    # (docs/benchmarks/default_loo.md, session 18); the shipped release and the earlier
    # leave-one-out rows were trained on random batches (--no-length-grouping).
    length_grouping: bool = True
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    max_length: int | None = None
    length_quantile: float = 0.95
    description_tokens: int = 32
    max_length_cap: int = 128
    precision: str = "auto"
    threads: int | None = None
    seed: int = 1
    select_epoch: str = "last"
    eval_batch_size: int = 128
    # head
    signals: str = "pair_signals_v2"
    margin: bool = False
    head_folds: int = 5
    head_l2: float = 1.0
    head_fit: str = "pairs"
    # ranked validation lists for the top-1 cuts (ranked.py); 0 offers: pairwise cuts only
    ranked_offers: int = 300
    ranked_k: int = 10
    ranked_absent_share: float = 0.5

    def __post_init__(self) -> None:
        if self.pairs_per_epoch < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("pairs_per_epoch, epochs and batch_size must be >= 1")
        if not 0.0 < self.max_share <= 1.0 or self.max_repeats <= 0:
            raise ValueError("max_share must be in (0, 1] and max_repeats > 0")
        if not 0.0 <= self.hard_negative_share < 1.0:
            raise ValueError("hard_negative_share must be in [0, 1)")
        if self.select_epoch not in ("last", "best-valid"):
            raise ValueError(f"select_epoch must be 'last' or 'best-valid', got {self.select_epoch!r}")
        if self.head_fit not in ("pairs", "ranked", "both"):
            raise ValueError(f"head_fit must be pairs, ranked or both, got {self.head_fit!r}")
        if self.ranked_offers < 0 or self.ranked_k < 1 or not 0.0 <= self.ranked_absent_share < 1.0:
            raise ValueError("ranked_offers must be >= 0, ranked_k >= 1 and ranked_absent_share in [0, 1)")
        if self.head_fit != "pairs" and self.ranked_offers == 0:
            raise ValueError(f"head_fit={self.head_fit!r} needs ranked lists (ranked_offers > 0)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if "title" not in self.fields:
            raise ValueError("fields must include title")
        known = {s.name for s in self.sources}
        unknown = sorted(set(self.exclude) - known)
        if unknown:
            raise ValueError(f"--exclude names unknown sources {unknown}; known: {sorted(known)}")

    def active_sources(self) -> tuple[SourceSpec, ...]:
        """The sources left after ``exclude``, dropping those derived from an excluded one too."""
        out = tuple(s for s in self.sources if s.name not in self.excluded())
        if not out:
            raise ValueError("every source is excluded")
        return out

    def excluded(self) -> set[str]:
        """``exclude`` closed over ``derived_from`` (leaving WDC Products out leaves WDC Block out)."""
        gone = set(self.exclude)
        changed = True
        while changed:
            changed = False
            for s in self.sources:
                if s.derived_from in gone and s.name not in gone:
                    gone.add(s.name)
                    changed = True
        return gone

    def with_overrides(self, **changes: Any) -> RecipeConfig:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON values, as stored in the manifest."""
        out = asdict(self)
        out["excluded"] = sorted(self.excluded())
        return out


#: Presets of ``--budget``: the full recipe; ``short``, 126,000 training pairs (3 x 42,000, 37 %
#: of ``full``) so that two runs side by side, one thread each (~25 pairs/s per core), finish in
#: about 1.5 h, the shipped model and one leave-one-out run inside one 3-hour session; and a smoke
#: run of the whole pipeline in minutes.
BUDGETS: dict[str, dict[str, Any]] = {
    "full": {},
    "short": {"pairs_per_epoch": 42_000, "epochs": 3},
    "smoke": {"pairs_per_epoch": 320, "epochs": 1, "valid_per_source": 40, "ranked_offers": 20},
}


def budget_config(budget: str = "full", **overrides: Any) -> RecipeConfig:
    """The default config with a budget preset and explicit overrides (``None`` ignored)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    return RecipeConfig().with_overrides(**BUDGETS[budget]).with_overrides(**overrides)


__all__ = [
    "BUDGETS",
    "DEFAULT_SOURCES",
    "SERVICE_FIELDS",
    "DropoutConfig",
    "RecipeConfig",
    "SourceSpec",
    "budget_config",
]
