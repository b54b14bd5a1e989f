"""``repsys sim plant``."""

from __future__ import annotations

from typing import Any

from core.cli import DemoProcess


def add_commands(sim_sub: Any) -> None:
    """Register ``repsys sim plant ...`` on the ``sim`` sub-parser set."""


def demo_processes() -> list[DemoProcess]:
    return []
