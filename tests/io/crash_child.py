"""Child for test_crash_safety: paints non-overlapping strokes with autosave and prints
`acked N` each time the saver confirms that N strokes are on disk, until killed."""

import sys
import time
from pathlib import Path

from segstudio.core.document import ImageDocument
from segstudio.io.autosave import Autosaver
from segstudio.io.project import Project

GRID = 24


def stroke_centre(k: int) -> tuple[int, int]:
    return 12 + (k // 20) * GRID, 12 + (k % 20) * GRID


def main(root: str) -> None:
    project = Project.open(Path(root))
    entry = project.images[0]
    mask = project.load_mask(entry, (480, 480))
    doc = ImageDocument(mask)
    acked = [0]

    def on_saved(_image_id: str, n: int) -> None:
        acked[0] += n
        print(f"acked {acked[0]}", flush=True)

    saver = Autosaver(project.masks, delay=0.002, on_saved=on_saved, compact_after=8_000)
    doc.edited.connect(lambda tiles: saver.submit(entry.id, doc.shape, tiles))
    for k in range(400):
        y, x = stroke_centre(k)
        doc.begin_stroke()
        doc.paint_segment((y - 4, x - 4), (y + 4, x + 4), 5, 1 + k % 2)
        doc.end_stroke()
        if k % 25 == 24:
            project.update_entry(entry.id, labelled=k / 400)
            project.save()                      # the manifest is rewritten too
        time.sleep(0.002)
    saver.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
