"""Configuration section ``rules:``, validated by the model below (owned by ``rules/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class RulesConfig(StrictModel):
    """Settings of the ``rules`` package. Every key has a default and a description."""
