"""Simulated plex: see sim/README.md."""
