"""CLI commands of the consumer side (``dataflow verify``, ``dataflow load``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Add the consumer commands to the ``dataflow`` CLI."""
