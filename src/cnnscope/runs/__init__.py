"""A run directory: its file names (layout), checkpoints, loading a Run, and the catalog of many runs."""
