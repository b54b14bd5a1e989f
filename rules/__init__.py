"""rules: see README.md in this folder and docs/ARCHITECTURE.md."""
