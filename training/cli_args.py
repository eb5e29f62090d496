"""Argument types, the dataset options and the output helpers shared by the training commands.

Used by ``training/cli.py`` (blocker), ``training/cli_matcher.py`` and
``training/cli_recommend.py``; the service's own commands (``app/cli.py``) need none of them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from training.data.readers import FORMATS, SIZE_ORDER


def int_list(text: str) -> list[int]:
    """``1,5,10`` -> ``[1, 5, 10]`` (at least one integer)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def field_names(text: str) -> list[str]:
    """``name,description`` -> ``["name", "description"]`` (at least one attribute name)."""
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out:
        raise argparse.ArgumentTypeError("expected attribute names, e.g. title or name,description")
    return out


def field_tuple(text: str) -> tuple[str, ...]:
    """:func:`field_names` as a tuple."""
    return tuple(field_names(text))


def add_dataset_options(parser: argparse.ArgumentParser, *, sizes: bool = False, fields: bool = False) -> None:
    """``--data`` and ``--format`` of a benchmark dataset; ``--size`` and ``--fields`` on request."""
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder (or a name under the data root)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="dataset format")
    if sizes:
        parser.add_argument(
            "--size",
            choices=SIZE_ORDER,
            default=None,
            help="train/valid size of WDC LSPC Ditto folders and WDC Products (default: the reader's, medium)",
        )
    if fields:
        parser.add_argument(
            "--fields",
            type=field_names,
            default=None,
            help="comma-separated attributes joined with spaces (default: METHODS §9.5 per dataset, else title)",
        )


def emit(text: str, stream: TextIO | None = None) -> None:
    """Write one line of CLI output (results to stdout, progress and errors to stderr)."""
    target = stream if stream is not None else sys.stdout
    target.write(text + "\n")
    target.flush()


def error(message: str) -> int:
    """Report a usage error on stderr; the command's exit status (2)."""
    emit(f"error: {message}", sys.stderr)
    return 2
