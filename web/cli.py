"""``repsys`` commands of the ``web`` package."""

from __future__ import annotations

from typing import Any

from core.cli import DemoProcess


def add_commands(sub: Any) -> None:
    """Register this package's commands on the ``repsys`` parser."""


def demo_processes() -> list[DemoProcess]:
    """Processes this package adds to ``repsys demo``."""
    return []
