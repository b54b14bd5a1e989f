"""Simulated Plex accounting data (trial balance): see sim/README.md."""
