"""Dataset formats: `base` (the registries and the export contract), `import_base` (the import
contract), `writers` and `readers` (one registered class or function per format), and one
module per format's own code (coco, yolo, labelme, indexed_png, medical, polygons).

Everything here is pure numpy/OpenCV on in-memory masks; folders, splits, temporary
directories and progress live in `io.export` / `io.imports`.
"""


class FormatError(ValueError):
    """Input that does not follow its format; the message names the file and the place."""


def read_name_lines(path) -> list[str | None]:
    """A classes.txt: one checked class name per line (None for a blank line), so callers keep
    line numbers as they need them; a bad name is an error naming the file and the line."""
    from segstudio.core.classes import ClassError, source_class_name

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    out: list[str | None] = []
    for no, line in enumerate(lines, 1):
        try:
            out.append(source_class_name(line) if line.strip() else None)
        except ClassError as e:
            raise FormatError(f"{path}, line {no}: {e}") from None
    return out
