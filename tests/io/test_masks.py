"""Mask storage: journal records survive torn writes; compaction loses nothing."""

import numpy as np

from segstudio.core.document import ImageDocument
from segstudio.io.autosave import Autosaver
from segstudio.io.masks import MaskStore


def _strokes(doc, n):
    for k in range(n):
        doc.begin_stroke()
        doc.dab(10 + 13 * k % 90, 10 + 29 * k % 180, 6, 1 + k % 3)
        doc.end_stroke()


def _painted(folder, n):
    """A mask store, a 64 x 64 document with n strokes, and the journal record of each."""
    doc = ImageDocument.blank(64, 64)
    records = []
    doc.edited.connect(records.append)
    _strokes(doc, n)
    return MaskStore(folder), doc, records


def test_journal_replays_strokes_and_undo(tmp_path):
    store = MaskStore(tmp_path)
    saver = Autosaver(store)
    doc = ImageDocument.blank(100, 200)
    doc.edited.connect(lambda t: saver.submit("a", doc.shape, t))
    _strokes(doc, 10)
    doc.undo()
    doc.undo()
    doc.redo()
    saver.flush()
    assert np.array_equal(store.load("a", (100, 200)), doc.mask)
    saver.compact("a", doc.shape)
    saver.close()
    assert not store.journal_path("a").exists()
    assert np.array_equal(store.load("a", (100, 200)), doc.mask)


def test_torn_last_record_is_ignored(tmp_path):
    store, doc, records = _painted(tmp_path, 3)
    store.append("a", records[:2])
    good = store.load("a", (64, 64))
    with open(store.journal_path("a"), "ab") as f:      # a crash in the middle of a write
        f.write(b"SSJ1\x40\x00\x00\x00garbage")
    assert np.array_equal(store.load("a", (64, 64)), good)


def test_replaying_after_compaction_is_idempotent(tmp_path):
    store, doc, records = _painted(tmp_path, 4)
    store.append("a", records)
    journal = store.journal_path("a").read_bytes()
    store.compact("a", (64, 64))
    store.journal_path("a").write_bytes(journal)      # crash between PNG rename and unlink
    assert np.array_equal(store.load("a", (64, 64)), doc.mask)


def test_large_journal_is_compacted_automatically(tmp_path):
    store = MaskStore(tmp_path)
    saver = Autosaver(store, compact_after=10_000)
    doc = ImageDocument.blank(512, 512)
    doc.edited.connect(lambda t: saver.submit("a", doc.shape, t))
    rng = np.random.default_rng(1)
    for _ in range(30):
        doc.begin_stroke()
        doc.write(*_noise_rect(rng))
        doc.end_stroke()
    saver.close()
    assert store.journal_bytes("a") < 10_000 + 70_000
    assert store.png_path("a").exists()
    assert np.array_equal(store.load("a", (512, 512)), doc.mask)


def _noise_rect(rng):
    from segstudio.core.geometry import Rect
    y, x = rng.integers(0, 400, 2)
    r = Rect(int(y), int(x), int(y) + 100, int(x) + 100)
    return r, np.ones((100, 100), bool), rng.integers(0, 4, (100, 100)).astype(np.uint8)


def test_opening_a_project_never_removes_a_temporary_in_use(tmp_path):
    """A worker opening the project while the GUI saves must not delete the save's temporary."""
    import os
    import time

    from segstudio.io.atomic import remove_stale_temporaries
    fresh = tmp_path / ".project.json.abc.tmp"
    old = tmp_path / ".mask.png.def.tmp"
    fresh.write_text("being written")
    old.write_text("left by a crash")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    MaskStore(tmp_path)
    assert fresh.exists() and not old.exists()
    assert remove_stale_temporaries(tmp_path, older_than_s=0) == 1


def test_strokes_appended_after_a_torn_tail_are_replayed(tmp_path):
    """A crash mid-append leaves a torn record; the strokes painted after reopening must stay."""
    store, doc, records = _painted(tmp_path, 6)
    store.append("a", records[:2])
    with open(store.journal_path("a"), "ab") as f:      # the crash: half a record on disk
        f.write(b"SSJ1\x40\x00\x00\x00garbage")
    reopened = MaskStore(tmp_path)                       # the app starts again
    reopened.append("a", records[2:4])                   # and saves three more strokes
    reopened.append("a", records[4:])
    assert np.array_equal(MaskStore(tmp_path).load("a", (64, 64)), doc.mask)
    reopened.compact("a", (64, 64))                      # compaction keeps them too
    assert np.array_equal(MaskStore(tmp_path).load("a", (64, 64)), doc.mask)


def test_records_behind_garbage_from_older_versions_are_found_again(tmp_path):
    store, doc, records = _painted(tmp_path, 4)
    store.append("a", records[:2])
    path = store.journal_path("a")
    with open(path, "ab") as f:
        f.write(b"SSJ1\x40\x00\x00\x00torn")             # torn, then more intact records
    from segstudio.io.masks import encode_record
    with open(path, "ab") as f:
        f.write(b"".join(encode_record(t) for t in records[2:]))
    assert np.array_equal(MaskStore(tmp_path).load("a", (64, 64)), doc.mask)


def test_crafted_journal_records_are_reported_not_raised(tmp_path):
    """CRC-valid records that do not decode are skipped, named, and kept aside on compaction."""
    import struct
    import zlib

    from segstudio.io.masks import _HEAD, _MAGIC

    store, doc, records = _painted(tmp_path, 2)
    store.append("a", records)
    bad_payloads = [b"not zlib at all",
                    zlib.compress(b"\x01"),                                   # count cut short
                    zlib.compress(struct.pack("<I", 1) + struct.pack("<IIII", 60, 60, 64, 64)),
                    zlib.compress(struct.pack("<I", 1) + struct.pack("<IIII", 0, 0, 8, 8) + b"x")]
    with open(store.journal_path("a"), "ab") as f:
        for payload in bad_payloads:
            f.write(_HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload)
    fresh = MaskStore(tmp_path)
    assert np.array_equal(fresh.load("a", (64, 64)), doc.mask)
    problems = fresh.take_problems("a")
    assert len(problems) == 1 and "4 unreadable record(s)" in problems[0]
    assert "a.journal" in problems[0]
    fresh.compact("a", (64, 64))
    assert list(tmp_path.glob("a.journal.damaged-*")), "unreadable records must not be deleted"
    assert np.array_equal(MaskStore(tmp_path).load("a", (64, 64)), doc.mask)
