"""What ships inside the package: the sample project and the starter models.

They live at the repository's top level (`resources/`, `models/`) and are installed as the
packages `segstudio._resources` and `segstudio._models` (pyproject.toml maps the folders), so
`pip install .` carries them and `importlib.resources` finds them in an editable install and
in a normal one alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def _package_folder(package: str, checkout_folder: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        # only a source checkout that was never installed (PYTHONPATH=.) gets here: an
        # install of either kind has the package
        return _CHECKOUT / checkout_folder
    if not isinstance(root, Path):
        raise FileNotFoundError(f"{package} is installed inside an archive ({root}); SegStudio "
                                f"needs its bundled files on disk: install it unzipped (pip install)")
    return root


def sample_source() -> Path:
    """The bundled sample project (read-only: the app opens a private copy, see userdirs)."""
    return _package_folder("segstudio._resources", "resources") / "sample_project"


def starter_models() -> Path:
    """The folder of bundled starter models (one run folder each: best.pt, model_card.json)."""
    return _package_folder("segstudio._models", "models")
