"""Every widget. Imports Qt; never imported by core, io or ml."""
