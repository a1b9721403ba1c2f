"""SegStudio: label images, train segmentation models, measure and export them."""

__version__ = "0.1.0"
