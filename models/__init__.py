"""Bundled starter models, installed as the package segstudio._models (see segstudio/io/bundled.py)."""
