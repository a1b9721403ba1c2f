"""A normal (non-editable) install carries the sample project and the starter model.

`pip install .` used to ship neither: both were found through the checkout's folders. The
slow test is the CI step for it (`make test` runs it): it builds and installs a copy of the
tree into a temporary folder and starts the window from that install alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# what a wheel is built from; a copy, so the build's build/ and *.egg-info stay out of the checkout
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "segstudio", "resources", "models")

CHILD = r"""
import json, sys, time
from pathlib import Path

target = Path(sys.argv[1]).resolve()
import segstudio
from segstudio.io.bundled import sample_source, starter_models
from segstudio.io.userdirs import sample_project

report = {"package": segstudio.__file__, "sample": str(sample_source()),
          "models": str(starter_models()),
          "checkout_on_path": any(Path(p or ".").resolve() == Path(sys.argv[2]).resolve()
                                  for p in sys.path)}
from PySide6.QtWidgets import QApplication
from segstudio.io.project import Project
from segstudio.ui.app import build_main_window, choose_project

app = QApplication([])
project, problem = choose_project(None, sample=True)      # what `segstudio --sample` opens
report["problem"] = problem
w = build_main_window(project)
w.show()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and (w.canvas.document is None or w.model_loop.active_run is None):
    app.processEvents()
    time.sleep(0.01)
report["opened"] = str(w.project.root) if w.project else None
report["image_shown"] = w.canvas.document is not None
report["active_run"] = str(w.model_loop.active_run) if w.model_loop.active_run else None
report["copied_from"] = str(sample_project())
w.close()
print("REPORT " + json.dumps(report))
"""


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists its packages (two of them are mapped folders): none may be left out."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "segstudio").rglob("__init__.py")}
    listed = set(config["packages"])
    assert on_disk - listed == set(), f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert config["package-dir"] == {"segstudio._resources": "resources", "segstudio._models": "models"}
    for package, folder in config["package-dir"].items():
        assert package in listed and (REPO / folder / "__init__.py").is_file()


def test_the_editable_install_maps_the_top_level_folders():
    """`pip install -e .` (make setup) serves resources/ and models/ as the bundled packages."""
    from importlib import resources

    from segstudio.io.bundled import sample_source, starter_models

    try:
        found = Path(str(resources.files("segstudio._resources")))
    except ModuleNotFoundError:
        pytest.fail("segstudio._resources is not importable: the editable install predates the "
                    "package-dir mapping in pyproject.toml; run pip install -e .[dev]")
    assert found == REPO / "resources"
    assert sample_source() == REPO / "resources" / "sample_project"
    assert starter_models() == REPO / "models"
    assert (starter_models() / "starter-nuclei" / "best.pt").is_file()


@pytest.mark.slow
def test_non_editable_install_opens_the_sample_with_the_starter_model(tmp_path):
    from importlib.metadata import PackageNotFoundError, version

    try:
        setuptools = version("setuptools")
    except PackageNotFoundError:
        setuptools = "0"
    if int(setuptools.split(".")[0]) < 77:
        pytest.fail(f"building the wheel needs setuptools>=77 in this venv (found {setuptools}): "
                    f"pip install -e .[dev]")
    src, target, cwd = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    src.mkdir()
    cwd.mkdir()
    _copy_sources(src)
    # the current venv's setuptools builds it (no network); --target: a plain install, not a link
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--no-index", "--disable-pip-version-check", "--quiet", "--target",
                            str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    shutil.rmtree(src)                     # nothing may be read from the built tree afterwards
    # -S: no site, so no .pth file puts the checkout's editable install on the path; the
    # venv's dependencies come from its site-packages, listed after the install
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=os.pathsep.join([str(target), *deps]), QT_QPA_PLATFORM="offscreen",
               SEGSTUDIO_DATA_DIR=str(tmp_path / "data"), SEGSTUDIO_CONFIG_DIR=str(tmp_path / "config"))
    out = subprocess.run([sys.executable, "-S", "-c", CHILD, str(target), str(REPO)], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("REPORT ")), None)
    assert out.returncode == 0 and line, out.stdout + out.stderr
    report = json.loads(line.removeprefix("REPORT "))
    installed = target / "segstudio"
    assert Path(report["package"]).is_relative_to(installed) and not report["checkout_on_path"]
    assert report["sample"] == str(installed / "_resources" / "sample_project")
    assert report["models"] == str(installed / "_models")
    assert report["problem"] is None
    assert report["opened"] == str((tmp_path / "data" / "sample-project").resolve())
    assert report["opened"] == str(Path(report["copied_from"]).resolve())
    assert report["image_shown"]
    assert report["active_run"] == str(installed / "_models" / "starter-nuclei")
