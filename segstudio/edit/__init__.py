"""Mask editing algorithms (numpy + OpenCV): region proposals and whole-mask operations.

No Qt: each function takes arrays and returns a (Rect, bool region) proposal or a new mask
region; the document turns it into one undoable step.
"""
