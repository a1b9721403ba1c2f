"""Dataset formats: `base` (the registries and the export contract), `import_base` (the import
contract), `writers` and `readers` (one registered class or function per format), and one
module per format's own code (coco, yolo, labelme, indexed_png, medical, polygons).

Everything here is pure numpy/OpenCV on in-memory masks; folders, splits, temporary
directories and progress live in `io.export` / `io.imports`.
"""


class FormatError(ValueError):
    """Input that does not follow its format; the message names the file and the place."""
