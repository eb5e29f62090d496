"""Service settings, read from the environment and `.env` (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ADMIN_TOKEN = "changethis"
# models/serving_precision.SERVING_PRECISIONS (settings import nothing from models/;
# tests/app/core/test_config_defaults.py keeps the two equal).
SERVING_PRECISIONS = ("auto", "bf16", "fp32", "int8")
# The repository folder of the shipped default matcher (artefacts/default-matcher/README.md). A
# checkout finds it beside app/; an installed package (the Docker image) sets DEFAULT_MATCHER.
SHIPPED_DEFAULT_MATCHER = Path(__file__).resolve().parents[2] / "artefacts" / "default-matcher"
SCORERS = ("default", "zero-shot")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"

    # Storage. The database is the source of truth; the index is derived from it.
    data_dir: Path = Path("var")
    database_url: str = ""
    index_dir: Path | None = None
    model_dir: Path | None = None
    upload_dir: Path | None = None
    results_dir: Path | None = Field(default=None, description="bulk-match result files (and their parts)")
    ingest_allowed_dir: Path | None = Field(
        default=None, description="server-side files may be ingested only from below this folder"
    )

    # Queue: Redis when set, else an in-process worker thread.
    redis_url: str | None = None
    queue_name: str = "productmatch"
    job_lease_seconds: float = 30.0
    # At shutdown the in-process worker may finish the job in hand for this long (longer jobs
    # are redelivered from their checkpoints after the restart).
    shutdown_grace_seconds: float = Field(default=10.0, ge=0.0, le=300.0)

    # Models and index.
    encoder: str = "minilm"
    encoder_max_length: int = 64
    encoder_batch_size: int = Field(default=64, ge=1, le=4096)
    torch_threads: int | None = None
    # Where the encoder and the matcher run: auto = the first CUDA GPU torch sees, else the CPU.
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    # Serving precision of the bi-encoder, the active cross-encoder and the trained recommender's
    # encoder (models/serving_precision.py): auto = bf16 where the CPU has AMX/AVX512-BF16 or the
    # GPU bf16, else fp32; int8 = dynamic int8 Linear layers (CPU only). The resolved precision is
    # part of every stored vector's model id, so a change re-embeds the catalogue beside the old
    # vectors instead of mixing the two.
    precision: Literal["auto", "bf16", "fp32", "int8"] = "auto"
    # The older per-model knobs: int8 for the bi-encoder (packaged or registered) / the active
    # matcher only. They win over PRECISION while PRECISION is left unset; set together with a
    # PRECISION that says otherwise, start-up fails (see _check_precisions).
    encoder_quantize: Literal["none", "int8"] = "none"
    matcher_quantize: Literal["none", "int8"] = "none"
    index_kind: Literal["flat", "hnsw", "ivfpq"] = "flat"
    index_sync_interval: float = 0.5
    index_snapshot_every: int = 5000

    # Hybrid blocking (models/hybrid_blocking.py): each query's dense top BLOCKING_POOL plus its
    # BM25 top BLOCKING_LEXICAL_CANDIDATES are ranked by cosine + weight * normalised BM25 before
    # the cut to k; BLOCKING_LEXICAL_WEIGHT = 0 serves dense blocking only. The defaults are the
    # tuned DEFAULT_* of models/hybrid_blocking.py (settings import nothing from models/;
    # tests/app/core/test_config_defaults.py keeps the two equal).
    blocking_pool: int = Field(default=200, ge=1, le=2_000)
    blocking_lexical_candidates: int = Field(default=50, ge=0, le=1_000)
    blocking_lexical_weight: float = Field(default=0.3, ge=0.0, le=10.0)

    # Which scorer serves (app/registry/scorers.py). default: the promoted matcher, else the
    # shipped default matcher in DEFAULT_MATCHER (registered and promoted at start-up when no
    # matcher is active), else the zero-shot scorer; zero-shot: the zero-shot scorer whatever is
    # promoted. DEFAULT_MATCHER="" means no shipped model.
    scorer: Literal["default", "zero-shot"] = "default"
    default_matcher: Path | None = SHIPPED_DEFAULT_MATCHER

    # The scorer reads only blocking's first RERANK_DEPTH candidates (0: all top_k of them); the
    # others are returned after them in blocking order with a null score. Replayed on saved answers
    # (docs/benchmarks.md, "How deep must the reranker look?"), depth 5 of 10 cost at most 0.5 F1.
    rerank_depth: int = Field(default=0, ge=0, le=100)

    # Zero-shot scorer: cosine blended with a rapidfuzz lexical score.
    lexical_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    match_threshold: float = Field(default=0.85, ge=0.0, le=1.0)
    review_threshold: float = Field(default=0.65, ge=0.0, le=1.0)
    # Trained matcher: its calibrated probability is compared with the threshold that reached
    # MATCH_PRECISION on validation; the review band starts at MATCHER_REVIEW_PROBABILITY.
    match_precision: float = Field(default=0.95, gt=0.0, le=1.0)
    matcher_review_probability: float = Field(default=0.2, ge=0.0, le=1.0)
    # The default matcher's head decides at its cut on the *top candidate* of ranked lists that
    # reached MATCH_PRECISION on its sources' validation offers (training/default_recipe/ranked.py).
    # A head fitted before ranked lists has only pairwise cuts: it uses the one that reached
    # HEAD_PAIR_PRECISION on its pooled validation pairs. The top candidate of a ranked list is
    # right more often than a pair above the same cut: end to end (docs/benchmarks.md, "End to
    # end") the pairwise 0.9 cut gave automatic matches 96.7 % precise on Abt-Buy, while the
    # pairwise 0.95 cut matched only 49 % of the offers there and 8 % on Amazon-Google. Precision
    # on a new catalogue is only known from its own labels (refit).
    head_pair_precision: float = Field(default=0.9, gt=0.0, le=1.0)
    # Which top-1 cut: "f1", the best offer-level F1 of the validation decisions (a catalogue
    # without labels: docs/benchmarks/default_loo.md shows the precision cuts do not transfer),
    # or "precision", the cut for MATCH_PRECISION. A per-catalogue calibration replaces either.
    head_match_cut: Literal["f1", "precision"] = "f1"

    # Per-catalogue calibration (POST /v1/admin/calibration, app/registry/calibration.py): the
    # serving scorer's thresholds refitted on the catalogue's own labelled pairs. The match cut
    # reaches MATCH_PRECISION on them; the review band starts where the refitted match
    # probability reaches CALIBRATION_REVIEW_PROBABILITY. A refit needs CALIBRATION_MIN_LABELS
    # labels of catalogue products (both classes) and reads the newest CALIBRATION_MAX_LABELS.
    # CALIBRATE_EVERY_LABELS > 0 refits by itself (a job) after that many new labels.
    calibration_min_labels: int = Field(default=25, ge=2, le=100_000)
    calibration_max_labels: int = Field(default=5_000, ge=2, le=200_000)
    calibration_review_probability: float = Field(default=0.2, gt=0.0, lt=1.0)
    calibrate_every_labels: int = Field(default=0, ge=0, le=1_000_000)

    # Limits: every request size is bounded.
    max_body_bytes: int = 1_000_000
    max_upload_bytes: int = 100_000_000
    # POST /v1/feedback/import reads the file in memory; 100,000 rows of ~200 bytes fit.
    feedback_import_max_bytes: int = Field(default=20_000_000, ge=1_000, le=200_000_000)
    # JSON request bodies nested deeper than this are refused (422) before they are parsed.
    max_json_depth: int = Field(default=64, ge=4, le=500)
    max_batch_items: int = 100
    max_top_k: int = 100
    default_top_k: int = 10
    max_text_chars: int = 2_000
    max_description_chars: int = 20_000
    max_row_errors: int = 1_000
    ingest_chunk_rows: int = 500
    # Bulk matching of feeds: offers per checkpointed chunk; server-side feeds may exceed the
    # upload limit because they are streamed, never held in memory.
    match_feed_chunk_rows: int = Field(default=1000, ge=1, le=100_000)
    match_feed_max_bytes: int = 20_000_000_000
    # Ray engine (RAY_ADDRESS or engine=ray): actors per stage; GPUs per embedding actor
    # (None: one GPU per actor when the cluster has GPUs, else CPU).
    ray_actors: int = Field(default=2, ge=1)
    ray_gpus_per_actor: float | None = Field(default=None, ge=0)

    # Retraining (POST /v1/admin/retrain): backbone to fine-tune (None = the packaged MiniLM),
    # the benchmark folders a request may name (name -> reader format, folder under the data
    # root), and how much feedback a run needs.
    retrain_backbone: str | None = None
    retrain_data_root: Path | None = None
    retrain_benchmarks: dict[str, str] = Field(
        default_factory=lambda: {
            "abt-buy": "deepmatcher",
            "amazon-google": "deepmatcher",
            "wdc-products-80cc20rnd": "wdc-products",
        }
    )
    retrain_min_labels: int = Field(default=20, ge=2)
    retrain_corpus_limit: int = Field(default=20_000, ge=1)
    retrain_unlabelled_limit: int = Field(default=5_000, ge=0)

    # Recommender (POST /v1/recommend): a folder from `productmatch train recommender` (None =
    # zero-shot: the serving bi-encoder's title embeddings). `automated` uses the model's
    # validation threshold at the target precision unless a threshold is set here.
    recommend_model_dir: Path | None = None
    recommend_target_precision: float = Field(default=0.95, ge=0.5, le=1.0, description="0.95 or 0.98 are stored")
    recommend_automation_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    recommend_max_batch_items: int = Field(default=64, ge=1, le=64)
    # Query images (ViXML models only): uploads are always allowed, local paths only below
    # recommend_image_dir, URLs only when explicitly allowed (a server-side fetch).
    recommend_image_max_bytes: int = Field(default=1_000_000, ge=1_000, le=20_000_000)
    recommend_image_dir: Path | None = None
    recommend_allow_image_urls: bool = False
    recommend_image_url_timeout: float = Field(default=5.0, gt=0, le=60)

    admin_token: str = DEFAULT_ADMIN_TOKEN
    load_demo_catalogue: bool = True
    log_level: str = "INFO"

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("default_matcher", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("scorer", mode="before")
    @classmethod
    def _known_scorer(cls, value: object) -> object:
        name = value.strip().lower() if isinstance(value, str) else value
        if name not in SCORERS:
            raise ValueError(f"SCORER must be one of {', '.join(SCORERS)}; got {value!r}")
        return name

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, value: object) -> object:
        name = value.strip().lower() if isinstance(value, str) else value
        if name not in SERVING_PRECISIONS:
            raise ValueError(f"PRECISION must be one of {', '.join(SERVING_PRECISIONS)}; got {value!r}")
        return name

    @model_validator(mode="after")
    def _check_precisions(self) -> Settings:
        """Refuse a PRECISION that contradicts a per-model *_QUANTIZE knob or the device.

        Only explicit values count: the knobs' defaults never contradict anything, and a knob
        set to int8 next to an unset PRECISION is the older way of asking for int8 on one model.
        """
        explicit = self.model_fields_set
        if "precision" in explicit:
            knobs = (("encoder_quantize", self.encoder_quantize), ("matcher_quantize", self.matcher_quantize))
            for knob, value in knobs:
                if knob in explicit and (value == "int8") != (self.precision == "int8"):
                    raise ValueError(
                        f"PRECISION={self.precision} contradicts {knob.upper()}={value}: set only one of them"
                        f" ({knob.upper()} is the older per-model knob; it chooses int8 for its model while"
                        " PRECISION is unset)"
                    )
        if self.device.startswith("cuda"):
            settings: tuple[tuple[str, str], ...] = (
                ("PRECISION", self.precision),
                ("ENCODER_QUANTIZE", self.encoder_quantize),
                ("MATCHER_QUANTIZE", self.matcher_quantize),
            )
            for name, chosen in settings:
                if chosen == "int8":
                    raise ValueError(f"{name}=int8 runs on the CPU only, but DEVICE={self.device}")
        return self

    @model_validator(mode="after")
    def _fill_paths_and_check(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'productmatch.db').as_posix()}"
        if self.database_url.startswith("postgresql://"):
            # Use psycopg 3, the driver we install.
            self.database_url = "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        self.index_dir = self.index_dir or self.data_dir / "index"
        self.model_dir = self.model_dir or self.data_dir / "models"
        self.upload_dir = self.upload_dir or self.data_dir / "uploads"
        self.results_dir = self.results_dir or self.data_dir / "results"
        self.ingest_allowed_dir = self.ingest_allowed_dir or self.data_dir / "import"
        if self.review_threshold > self.match_threshold:
            raise ValueError("REVIEW_THRESHOLD must not exceed MATCH_THRESHOLD")
        if self.environment != "development" and self.environment != "test":
            if self.admin_token == DEFAULT_ADMIN_TOKEN or len(self.admin_token) < 16:
                raise ValueError("ADMIN_TOKEN must be set to a secret of at least 16 characters outside development")
        if self.admin_token == DEFAULT_ADMIN_TOKEN and (not self.is_sqlite or self.redis_url):
            # PostgreSQL or Redis means a shared, long-lived deployment: the well-known default
            # would let anyone promote, roll back or retrain models.
            uses = " and ".join(
                name for name, used in (("PostgreSQL", not self.is_sqlite), ("Redis", bool(self.redis_url))) if used
            )
            raise ValueError(
                f"ADMIN_TOKEN is the default {DEFAULT_ADMIN_TOKEN!r}, which is only allowed for the embedded"
                f" development setup (SQLite, in-process jobs); this configuration uses {uses}:"
                " set ADMIN_TOKEN to a secret of at least 16 characters"
            )
        return self

    def ensure_dirs(self) -> None:
        folders = (
            self.data_dir,
            self.index_dir,
            self.model_dir,
            self.upload_dir,
            self.results_dir,
            self.ingest_allowed_dir,  # where server-side files for `path` go (README)
        )
        for folder in folders:
            Path(folder).mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]  # never None: Settings fills it in its validator

    @property
    def encoder_precision(self) -> str:
        """The bi-encoder's precision as set (``auto`` is resolved against the device at load)."""
        return "int8" if self.encoder_quantize == "int8" else self.precision

    @property
    def matcher_precision(self) -> str:
        """The active cross-encoder's precision as set."""
        return "int8" if self.matcher_quantize == "int8" else self.precision

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
