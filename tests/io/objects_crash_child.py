"""Child for test_objects_storage: paints non-touching strokes of an object class with autosave
(each stroke a new object) and prints `acked N` as the saver confirms strokes, until killed."""

import sys
import time
from pathlib import Path

from segstudio.core.classes import object_class_ids
from segstudio.core.document import ImageDocument
from segstudio.io.autosave import Autosaver
from segstudio.io.project import Project
from tests.io.crash_child import stroke_centre


def main(root: str) -> None:
    project = Project.open(Path(root))
    entry = project.images[0]
    mask, objects = project.load_layers(entry, (480, 480))
    doc = ImageDocument(mask, objects=objects, object_classes=object_class_ids(project.classes))
    acked = [0]

    def on_saved(_image_id: str, n: int) -> None:
        acked[0] += n
        print(f"acked {acked[0]}", flush=True)

    saver = Autosaver(project.masks, delay=0.002, on_saved=on_saved, compact_after=20_000)
    doc.edited.connect(lambda tiles: saver.submit(entry.id, doc.shape, tiles))
    for k in range(400):
        y, x = stroke_centre(k)
        doc.begin_stroke()
        doc.paint_segment((y - 4, x - 4), (y + 4, x + 4), 5, 1)
        doc.end_stroke()
        time.sleep(0.002)
    saver.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
