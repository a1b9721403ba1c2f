"""One record per format: a writer, a reader or an image type declared once reaches every list."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from segstudio.cli import build_parser, main
from segstudio.io.export import WRITERS, ExportError, ExportOptions, export_dataset
from segstudio.io.formats.base import register_reader, register_writer
from segstudio.io.image_base import ImageReader, register_image_reader
from segstudio.io.images import IMAGE_READERS, image_file_filter, is_supported, probe
from segstudio.io.imports import READERS
from tests.conftest import REPO

from .conftest import H, W, make_project


@pytest.fixture
def scratch_registries():
    """Formats a test registers are gone afterwards."""
    saved = dict(WRITERS), dict(READERS), dict(IMAGE_READERS)
    yield
    for registry, before in zip((WRITERS, READERS, IMAGE_READERS), saved):
        registry.clear()
        registry.update(before)


def _choices(command: str) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if a.dest == "format").choices)


def test_a_registered_writer_is_offered_by_the_cli_and_exports(tmp_path, scratch_registries):
    @register_writer("csv-counts", label="CSV", description="pixel counts per class (CSV)")
    class CountsWriter:
        def items(self, ctx, entries, splits):
            from segstudio.io.formats.base import Item
            return [Item(e.id, splits[e.id], [e]) for e in entries]

        def write_item(self, ctx, item):
            entry = item.entries[0]
            counts = np.bincount(ctx.mask(entry, ctx.info(entry)).ravel(), minlength=256)
            return f"{entry.id},{counts[1]},{counts[2]}"

        def finish(self, ctx, results):
            (ctx.root / "counts.csv").write_text("\n".join(r for _, r in results) + "\n")

    project = make_project(tmp_path)
    assert "csv-counts" in _choices("export")
    assert main(["export", str(project.root), "--format", "csv-counts",
                 "--out", str(tmp_path / "out")]) == 0
    rows = (tmp_path / "out" / "counts.csv").read_text().split()
    expected = []
    for e in project.images:
        mask = project.load_mask(e, (H, W))
        expected.append(f"{e.id},{int((mask == 1).sum())},{int((mask == 2).sum())}")
    assert sorted(rows) == sorted(expected)
    assert (tmp_path / "out" / "classes.json").is_file()     # what every format gets, too


def test_unknown_format_names_the_registered_ones(tmp_path):
    project = make_project(tmp_path)
    with pytest.raises(ExportError) as e:
        export_dataset(project, tmp_path / "out", ExportOptions(format="tiff-stack"))
    assert str(e.value) == f"unknown format 'tiff-stack'; known: {list(WRITERS)}"
    assert "dicom-seg" in str(e.value)


def test_a_name_registered_twice_is_refused(scratch_registries):
    with pytest.raises(ValueError, match="'coco' is registered twice"):
        register_writer("coco", label="COCO", description="another COCO")(type("Other", (), {}))
    with pytest.raises(ValueError, match="'yolo' is registered twice"):
        register_reader("yolo", label="YOLO", description="another")(lambda *a: ([], set()))
    with pytest.raises(ValueError, match=r"suffix\(es\) \['.dicom'\] already belong to \['dicom'\]"):
        register_image_reader(ImageReader("mine", "Mine", (".mine", ".dicom"), probe, probe))


def test_cli_choices_are_the_registries():
    assert _choices("export") == list(WRITERS) == ["png", "coco", "yolo", "voc", "nifti", "dicom-seg", "nnunet"]
    assert _choices("import") == list(READERS) == ["folder", "coco", "yolo", "labelme", "instances",
                                                  "nifti-volume"]


def test_readme_lists_every_format():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for command, registry in (("export", WRITERS), ("import", READERS)):
        listed = re.search(rf"segstudio-cli {command} PROJECT .*?--format ([\w|-]+)", text)
        assert listed, f"README: no `segstudio-cli {command} ... --format a|b` line"
        assert listed.group(1).split("|") == list(registry), command
    image_formats = re.search(r"- \*\*Formats\*\*: (.*?)\n- ", text, re.S).group(1)
    for reader in IMAGE_READERS.values():
        for name in reader.label.split(", "):
            assert name in image_formats, f"README's Formats line lacks {name} ({reader.kind})"


def test_image_filter_lists_every_suffix_the_readers_take():
    patterns = re.fullmatch(r"Images \(([^)]*)\);;All files \(\*\)", image_file_filter()).group(1)
    suffixes = [p.removeprefix("*") for p in patterns.split()]
    assert ".dicom" in suffixes and ".nii.gz" in suffixes
    assert suffixes == [s for r in IMAGE_READERS.values() for s in r.suffixes]
    assert all(is_supported(Path(f"scan{s.upper()}")) for s in suffixes)
    assert not is_supported(Path("notes.txt"))


def test_a_registered_image_type_is_read_and_offered(tmp_path, scratch_registries):
    def probe_raw(path):
        from segstudio.io.image_base import ImageInfo
        return [ImageInfo(path, None, 2, 3, 1, "uint8", "raw8")]

    register_image_reader(ImageReader(
        "raw8", "raw bytes", (".raw8",), probe_raw,
        lambda path, info: np.frombuffer(path.read_bytes(), np.uint8).reshape(2, 3)))
    f = tmp_path / "tiny.raw8"
    f.write_bytes(bytes(range(6)))
    from segstudio.io.images import read_image
    assert read_image(f).data.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert "*.raw8" in image_file_filter() and is_supported(f)
