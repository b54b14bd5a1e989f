"""Configuration section ``plex:``, validated by the model below (owned by ``plex/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class PlexConfig(StrictModel):
    """Settings of the ``plex`` package. Every key has a default and a description."""
