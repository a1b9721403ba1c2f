"""The instance layer on disk: round trips, the journal, crashes, class deletion, old projects."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from segstudio.core.classes import LabelClass, object_class_ids
from segstudio.core.document import ImageDocument
from segstudio.io.autosave import Autosaver
from segstudio.io.masks import MaskError, MaskStore
from segstudio.io.project import Project
from tests.conftest import REPO
from tests.io.crash_child import stroke_centre

CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "nucleus", "#E69F00", objects=True),
           LabelClass(2, "debris", "#009E73")]


def _project(tmp_path, size=(48, 64), classes=CLASSES):
    (tmp_path / "raw").mkdir()
    ok, buf = cv2.imencode(".png", np.zeros(size, np.uint8))
    (tmp_path / "raw" / "a.png").write_bytes(buf.tobytes())
    return Project.from_folder(tmp_path / "raw", tmp_path / "proj", classes=list(classes))


def _nuclei(shape=(48, 64), first_id=1):
    mask = np.zeros(shape, np.uint8)
    objects = np.zeros(shape, np.uint32)
    for k, (y, x) in enumerate(((10, 10), (10, 30), (30, 20))):
        mask[y:y + 10, x:x + 12] = 1
        objects[y:y + 10, x:x + 12] = first_id + k
    return mask, objects


def test_objects_flag_is_saved_only_when_set_and_old_manifests_load(tmp_path):
    p = _project(tmp_path)
    raw = json.loads((p.root / "project.json").read_text())
    assert [c.get("objects") for c in raw["classes"]] == [None, True, None]
    assert "objects" not in raw["classes"][0]
    again = Project.open(p.root)
    assert [c.objects for c in again.classes] == [False, True, False]
    assert object_class_ids(again.classes) == {1}
    # a manifest from before object classes (no key at all) opens unchanged
    for c in raw["classes"]:
        c.pop("objects", None)
    (p.root / "project.json").write_text(json.dumps(raw))
    old = Project.open(p.root)
    assert not any(c.objects for c in old.classes)
    with pytest.raises(Exception, match="'objects' must be true or false"):
        raw["classes"][1]["objects"] = "yes"
        (p.root / "project.json").write_text(json.dumps(raw))
        Project.open(p.root)


@pytest.mark.parametrize("first_id,suffix,dtype", [(1, ".objects.png", np.uint16),
                                                    (70_000, ".objects.tif", np.uint32)])
def test_round_trip_16_bit_and_past_65535(tmp_path, first_id, suffix, dtype):
    p = _project(tmp_path)
    e = p.images[0]
    mask, objects = _nuclei(first_id=first_id)
    p.masks.write(e.id, mask)
    p.masks.write_objects(e.id, objects)
    path = p.masks.objects_path(e.id)
    assert path.name == f"{e.id}{suffix}"
    [other] = [q for q in p.masks.objects_paths(e.id) if q != path]
    assert not other.exists()
    assert p.masks.has_objects(e.id)
    got = Project.open(p.root).load_objects(e, mask.shape)
    assert got.dtype == np.uint32 and np.array_equal(got, objects)
    if suffix == ".objects.png":     # a plain 16-bit label image other tools read
        on_disk = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert on_disk.dtype == dtype and np.array_equal(on_disk, objects)
    # back under 65536: the TIFF gives way to a PNG again
    p.masks.write_objects(e.id, np.minimum(objects, 3))
    assert p.masks.objects_path(e.id).name.endswith(".objects.png")
    assert sum(q.exists() for q in p.masks.objects_paths(e.id)) == 1


def test_no_layer_loads_as_zeros_and_a_mask_loads_as_before(tmp_path):
    p = _project(tmp_path)
    e = p.images[0]
    mask = _nuclei()[0]
    p.masks.write(e.id, mask)
    assert not p.masks.has_objects(e.id)
    assert np.array_equal(p.load_mask(e, mask.shape), mask)
    got = p.load_objects(e, mask.shape)
    assert got.dtype == np.uint32 and not got.any()
    assert p.load_layers(e, mask.shape)[1] is None


def _paint_objects(doc, saver, image_id, strokes):
    doc.edited.connect(lambda tiles: saver.submit(image_id, doc.shape, tiles))
    for y, x in strokes:
        doc.begin_stroke()
        doc.dab(y, x, 4, 1)
        doc.end_stroke()


def test_journal_keeps_objects_and_compaction_folds_them(tmp_path):
    p = _project(tmp_path)
    e = p.images[0]
    doc = ImageDocument.blank(48, 64, object_classes=object_class_ids(p.classes))
    saver = Autosaver(p.masks, delay=0.0, compact_after=1 << 30)
    _paint_objects(doc, saver, e.id, [(10, 10), (10, 18), (30, 40)])   # two touching
    doc.undo()
    assert saver.flush()
    assert p.masks.journal_bytes(e.id) > 0 and p.masks.objects_path(e.id) is None
    assert p.masks.has_objects(e.id)               # ids only in the journal so far
    mask, objects = Project.open(p.root).load_layers(e, doc.shape)
    assert np.array_equal(mask, doc.mask) and np.array_equal(objects, doc.objects)
    assert len(set(np.unique(objects)) - {0}) == 2
    saver.compact(e.id, doc.shape)
    assert saver.flush()
    saver.close()
    assert p.masks.journal_bytes(e.id) == 0 and p.masks.objects_path(e.id) is not None
    mask, objects = Project.open(p.root).load_layers(e, doc.shape)
    assert np.array_equal(mask, doc.mask) and np.array_equal(objects, doc.objects)


def test_writing_a_mask_keeps_the_journal_objects(tmp_path):
    p = _project(tmp_path)
    e = p.images[0]
    doc = ImageDocument.blank(48, 64, object_classes={1})
    saver = Autosaver(p.masks, delay=0.0)
    _paint_objects(doc, saver, e.id, [(20, 20)])
    saver.close()
    p.masks.write(e.id, doc.mask)              # e.g. an import's rollback: objects kept
    assert np.array_equal(p.load_objects(e, doc.shape), doc.objects)
    p.masks.write(e.id, doc.mask, None)        # None removes the layer
    assert not p.masks.has_objects(e.id)


def test_sigkill_loses_no_acknowledged_object(tmp_path):
    p = _project(tmp_path, size=(480, 480))
    root = p.root
    rnd = random.Random(99)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    best = 0
    for trial in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "tests.io.objects_crash_child", str(root)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        time.sleep(rnd.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        words = (first + out).split()
        acked = max((int(n) for w, n in zip(words, words[1:]) if w == "acked"), default=0)
        project = Project.open(root)
        mask, objects = project.load_layers(project.images[0], (480, 480))
        ids = [int(objects[stroke_centre(k)]) for k in range(acked)]
        assert all(mask[stroke_centre(k)] == 1 for k in range(acked)), f"trial {trial}"
        assert 0 not in ids and len(set(ids)) == acked, f"trial {trial}: objects lost or merged"
        best = max(best, acked)
        project.masks.write(project.images[0].id, np.full((480, 480), 255, np.uint8), None)
    assert best > 5


def test_deleting_a_class_clears_its_objects(tmp_path):
    p = _project(tmp_path)
    e = p.images[0]
    mask, objects = _nuclei()
    mask[40:, :] = 2
    p.masks.write(e.id, mask, objects)
    assert p.clear_class_from_masks(1) == 1
    m2, o2 = p.load_layers(e, mask.shape)
    assert (m2[mask == 1] == 255).all() and (m2[mask == 2] == 2).all()
    assert o2 is not None and not o2.any()


def test_ids_on_a_class_no_longer_marked_objects_are_dropped_on_load(tmp_path):
    p = _project(tmp_path)
    e = p.images[0]
    mask, objects = _nuclei()
    p.masks.write(e.id, mask, objects)
    p.set_classes([replace(c, objects=False) for c in p.classes])
    assert not p.load_objects(e, mask.shape).any()
    assert np.array_equal(p.load_mask(e, mask.shape), mask)


def test_a_damaged_layer_file_is_refused_with_its_name(tmp_path):
    store = MaskStore(tmp_path / "masks")
    store.write("a", np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint32))
    store.objects_path("a").write_bytes(b"\x89PNG garbage")
    with pytest.raises(MaskError, match=r"a\.objects\.png"):
        store.load_layers("a", (8, 8))
    with pytest.raises(MaskError, match="layer is 4 x 4 but the mask is 8 x 8"):
        store.write("b", np.zeros((8, 8), np.uint8), np.ones((4, 4), np.uint32))
    store.write("b", np.zeros((8, 8), np.uint8))
    store.objects_paths("b")[0].write_bytes(cv2.imencode(".png", np.ones((4, 4), np.uint16))[1])
    with pytest.raises(MaskError, match="4 x 4"):
        store.load_layers("b", (8, 8))
    with pytest.raises(MaskError, match="2-D"):
        store.write_objects("a", np.ones((2, 2, 2), np.uint32))
