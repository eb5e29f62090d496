"""``productmatch train default``: the default matcher recipe (joined to the ``train`` group by
``training/cli.py``).

    productmatch train default --out var/models/default                 # the full recipe, ~3 h
    productmatch train default --out var/models/default-no-abt --exclude abt-buy
    productmatch train default --out /tmp/default-smoke --budget smoke  # minutes, whole pipeline

Rerunning the same command after an interruption continues from the last finished epoch
(checkpoints in ``--work``, default ``<out>.work``). The summary goes to stdout as JSON; logs and
progress bars to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from models.match_head import SIGNAL_SETS
from models.precision import PRECISION_HELP, PRECISIONS
from training.cli_args import positive_int
from training.default_recipe.config import BUDGETS, DEFAULT_SOURCES, budget_config

logger = logging.getLogger(__name__)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_train_default(train_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``default`` to the ``train`` sub-commands."""
    p = train_sub.add_parser(
        "default",
        help="train the default matcher on every benchmark (built to transfer to unseen catalogues)",
        description="Train the default matcher recipe (docs/training.md, 'The default matcher').",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output model folder")
    p.add_argument("--work", default=None, metavar="DIR", help="checkpoint folder (default: <out>.work)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="benchmark data root (default: ../shared/data)")
    p.add_argument(
        "--exclude",
        type=_names,
        default=(),
        metavar="NAME[,NAME]",
        help=f"leave sources out (and those derived from them): {', '.join(s.name for s in DEFAULT_SOURCES)}",
    )
    p.add_argument("--budget", choices=sorted(BUDGETS), default="full", help="full recipe or a smoke run")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--pairs-per-epoch", type=positive_int, default=None)
    p.add_argument("--valid-per-source", type=positive_int, default=None)
    p.add_argument("--max-length", type=positive_int, default=None, help="default: from the token lengths")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--init",
        default=None,
        metavar="DIR",
        help="start from this default-matcher folder's cross-encoder (e.g. artefacts/default-matcher) "
        "instead of the pretrained backbone",
    )
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-5)")
    p.add_argument(
        "--signals",
        choices=SIGNAL_SETS,
        default=None,
        help="pair-signal features of the head (default pair_signals_v2: pair_signals and the quantity agreement)",
    )
    p.add_argument("--margin", action="store_true", default=None, help="add the margin to the best other candidate")
    p.add_argument(
        "--head-fit",
        choices=("pairs", "ranked", "both"),
        default=None,
        help="fit the head on the pooled validation pairs, the ranked lists' candidates, or both",
    )
    p.add_argument(
        "--ranked-offers",
        type=int,
        default=None,
        metavar="N",
        help="validation offers per source ranked like the service, for the top-1 cuts (0: none)",
    )
    p.add_argument("--select-epoch", choices=("last", "best-valid"), default=None)
    p.add_argument(
        "--length-grouping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batches of similar token length (less padding; on by default, --no-length-grouping for random batches)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_default, needs_settings=False)
    add_train_default_head(train_sub)
    return p


def add_train_default_head(train_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``default-head``: refit a trained default matcher's head and cuts (minutes)."""
    p = train_sub.add_parser(
        "default-head",
        help="refit the head and match cuts of a trained default matcher (the cross-encoder stays)",
        description="Refit a default matcher's head on its own training sources (docs/training.md).",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a default-matcher folder")
    p.add_argument("--out", default=None, metavar="DIR", help="write a refitted copy here (default: in place)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="benchmark data root (default: ../shared/data)")
    p.add_argument("--head-fit", choices=("pairs", "ranked", "both"), default=None)
    p.add_argument(
        "--margin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the margin to the best other candidate as head features",
    )
    p.add_argument("--ranked-offers", type=int, default=None, metavar="N")
    p.add_argument("--ranked-k", type=positive_int, default=None, metavar="K")
    p.add_argument(
        "--ranked-absent-share",
        type=float,
        default=None,
        metavar="F",
        help="share of ranked offers whose product is taken out of the catalogue (default 0.5)",
    )
    p.add_argument(
        "--signals",
        choices=SIGNAL_SETS,
        default=None,
        help="the head's pair-signal set (default: the folder's; pair_signals_v2 adds quantity agreement)",
    )
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(func=cmd_train_default_head, needs_settings=False)
    return p


def cmd_train_default_head(args: argparse.Namespace) -> int:
    from training.default_recipe.refit import refit_head

    result = refit_head(args.model, args.out, data_root=args.data_root, threads=args.threads,
                        head_fit=args.head_fit, margin=args.margin, ranked_offers=args.ranked_offers,
                        ranked_k=args.ranked_k, ranked_absent_share=args.ranked_absent_share,
                        signals=args.signals)  # fmt: skip
    top1 = result["head"]["valid"].get("top1") or {}
    json.dump({"out_dir": result["out_dir"], "top1": top1}, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def cmd_train_default(args: argparse.Namespace) -> int:
    from training.default_recipe.train import train_default  # torch only when the command runs

    config = budget_config(
        args.budget,
        exclude=args.exclude or None,
        epochs=args.epochs,
        pairs_per_epoch=args.pairs_per_epoch,
        valid_per_source=args.valid_per_source,
        max_length=args.max_length,
        seed=args.seed,
        init=args.init,
        lr=args.lr,
        signals=args.signals,
        margin=args.margin,
        select_epoch=args.select_epoch,
        head_fit=args.head_fit,
        ranked_offers=args.ranked_offers,
        length_grouping=args.length_grouping,
        threads=args.threads,
        precision=args.precision,
    )
    summary = train_default(
        args.out, config, data_root=args.data_root, work_dir=args.work, progress=not args.no_progress
    )
    json.dump(summary, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


__all__ = ["add_train_default", "add_train_default_head", "cmd_train_default", "cmd_train_default_head"]
