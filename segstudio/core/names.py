"""Names that are safe as file names everywhere: the one rule for image ids and output files.

Image ids in a project, the files a dataset export writes for a volume and the masks
`segstudio-cli predict` writes are all named by `slug`, so one picture gets the same name in
each of them.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 80


def slug(text: str, fallback: str = "image") -> str:
    """ASCII letters, digits, '.', '_' and '-' only: accents dropped ('é' -> 'e'), every other
    run of characters one '_', no leading/trailing '.' or '_', at most 80 characters; `fallback`
    when nothing is left."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return text[:MAX_LENGTH] or fallback
