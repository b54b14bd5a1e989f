"""Simulated plant: see sim/README.md."""
