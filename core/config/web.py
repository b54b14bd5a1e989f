"""Configuration section ``web:``, validated by the model below (owned by ``web/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class WebConfig(StrictModel):
    """Settings of the ``web`` package. Every key has a default and a description."""
