"""Command-line value types shared by every subcommand (``run``, ``study``, ``compare``,
``bench``, ...), so that each accepts and rejects the same values."""
from __future__ import annotations

import argparse

__all__ = ["positive_int", "add_threads_argument"]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``0``, ``-3`` and ``x`` are one error line, exit 2)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch threads per training process (default: ``OMP_NUM_THREADS`` when
    set, else 1; :func:`mmrec_plugin.utils.default_threads`)."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch threads per training process (default: OMP_NUM_THREADS if "
                             "set, else 1: faster on small data and on a busy machine)")
