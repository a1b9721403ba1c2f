"""The headless CLI: create, inspect and check, with plain messages and exit codes."""

import json
import shutil

import cv2
import numpy as np

from segstudio.cli import main
from tests.conftest import SAMPLE


def test_new_and_info(tmp_path, capsys):
    src = tmp_path / "my images"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.png"), np.full((8, 8), i, np.uint8))
    (src / "bad.png").write_bytes(b"")
    assert main(["new", str(src), "--out", str(tmp_path / "p"), "--classes", "background,cell"]) == 0
    out = capsys.readouterr()
    assert "created" in out.out and "3 images" in out.out
    assert "bad.png: file is empty" in out.err
    assert main(["info", str(tmp_path / "p")]) == 0
    assert "0=background, 1=cell" in capsys.readouterr().out


def test_info_check_reports_unreadable_files(tmp_path, capsys):
    root = tmp_path / "p"
    shutil.copytree(SAMPLE, root)
    (root / "images" / "nuclei_05.png").write_bytes(b"garbage")
    cv2.imwrite(str(root / "masks" / "nuclei_01.png"), np.zeros((3, 3), np.uint8))
    assert main(["info", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "nuclei_05.png" in err and "nuclei_01.png: mask is 3 x 3" in err


def test_info_refuses_a_newer_manifest(tmp_path, capsys):
    root = tmp_path / "p"
    shutil.copytree(SAMPLE, root)
    m = json.loads((root / "project.json").read_text())
    m["version"] = 99
    (root / "project.json").write_text(json.dumps(m))
    assert main(["info", str(root)]) == 2
    assert "newer SegStudio" in capsys.readouterr().err


def test_check_files(tmp_path, capsys):
    (tmp_path / "notes.tif").write_text("hello")
    assert main(["check", str(SAMPLE / "images" / "nuclei_01.png"), str(tmp_path / "notes.tif")]) == 1
    out = capsys.readouterr()
    assert "256 x 256" in out.out and "notes.tif: not a readable TIFF" in out.err
