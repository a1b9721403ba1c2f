"""Bundled data, installed as the package segstudio._resources (see segstudio/io/bundled.py)."""
