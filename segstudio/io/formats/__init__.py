"""Dataset formats, one module each: writers used by `io.export`, readers used by `io.imports`.

Everything here is pure numpy/OpenCV on in-memory masks; folders, splits, temporary
directories and progress live in `io.export` / `io.imports`.
"""


class FormatError(ValueError):
    """Input that does not follow its format; the message names the file and the place."""
