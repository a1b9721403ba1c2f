"""A full disk or a read-only folder never loses an acknowledged stroke: the saver keeps them."""

import errno
import os
import subprocess
import threading

import numpy as np
import pytest

from segstudio.core.document import ImageDocument
from segstudio.io import masks as masks_module
from segstudio.io.autosave import Autosaver
from segstudio.io.masks import MaskStore


def _paint(doc, k):
    doc.begin_stroke()
    doc.dab(8 + (k * 11) % 100, 8 + (k * 17) % 180, 5, 1 + k % 2)
    doc.end_stroke()


class DiskFull:
    """ENOSPC from the saver's write call while `full` is set (the OS boundary, nothing else)."""

    def __init__(self, monkeypatch):
        self.full = threading.Event()
        real = masks_module._write_all

        def write_all(fd, data):
            if self.full.is_set():
                os.write(fd, bytes(data[: len(data) // 2]))   # a partial write, as a real disk does
                raise OSError(errno.ENOSPC, "No space left on device")
            real(fd, data)
        monkeypatch.setattr(masks_module, "_write_all", write_all)


def test_strokes_painted_while_the_disk_is_full_reach_disk_once_space_returns(tmp_path, monkeypatch):
    disk = DiskFull(monkeypatch)
    store = MaskStore(tmp_path)
    states, errors = [], []
    saver = Autosaver(store, delay=0.001, retry_after=60, on_state=states.append,
                      on_error=errors.append)
    doc = ImageDocument.blank(120, 200)
    doc.edited.connect(lambda t: saver.submit("a", doc.shape, t))
    _paint(doc, 0)
    assert saver.flush(10)
    disk.full.set()
    for k in range(1, 44):
        _paint(doc, k)
    assert not saver.flush(10)                       # Save tells the truth
    assert saver.state.unsaved == 43 and "disk is full" in saver.state.error
    assert len(errors) == 1, "one report for the episode, not one per stroke"
    saver.compact("a", doc.shape)                    # leaving the image must not fold a stale journal
    # the strokes not on disk are handed to whoever reloads the image
    reloaded = store.load("a", doc.shape)
    for tiles in saver.pending("a"):
        for rect, values in tiles:
            reloaded[rect.slices] = values
    assert np.array_equal(reloaded, doc.mask)
    disk.full.clear()
    assert saver.flush(10)                           # Save retries at once
    assert saver.state.unsaved == 0 and saver.state.ok
    assert states[-1].ok and not states[0].ok
    saver.close()
    assert np.array_equal(MaskStore(tmp_path).load("a", doc.shape), doc.mask)
    assert not store.journal_path("a").exists()      # the queued compaction ran after the appends


def test_the_saver_retries_by_itself_when_space_returns(tmp_path, monkeypatch):
    disk = DiskFull(monkeypatch)
    store = MaskStore(tmp_path)
    recovered = threading.Event()
    saver = Autosaver(store, delay=0.001, retry_after=0.05,
                      on_state=lambda s: s.ok and recovered.set())
    doc = ImageDocument.blank(64, 64)
    doc.edited.connect(lambda t: saver.submit("a", doc.shape, t))
    disk.full.set()
    for k in range(5):
        _paint(doc, k)
    deadline = 200
    while saver.state.ok and deadline:                # wait for the first failure
        threading.Event().wait(0.01)
        deadline -= 1
    assert not saver.state.ok
    disk.full.clear()
    assert recovered.wait(10)
    saver.close()
    assert np.array_equal(MaskStore(tmp_path).load("a", (64, 64)), doc.mask)


def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB filesystem (root only, as on CI); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "2m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_filesystem_loses_no_stroke(small_disk):
    store = MaskStore(small_disk / "masks")
    saver = Autosaver(store, delay=0.001, retry_after=60)
    doc = ImageDocument.blank(256, 256)
    doc.edited.connect(lambda t: saver.submit("a", doc.shape, t))
    _paint(doc, 0)
    assert saver.flush(10)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:       # take every free byte
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    k = 1
    while saver.flush(10) and k < 2000:               # the last page of the journal fills up
        _paint(doc, k)
        k += 1
    assert "disk is full" in saver.state.error
    for j in range(k, k + 10):                        # and the user keeps painting
        _paint(doc, j)
    assert not saver.flush(10) and saver.state.unsaved >= 10
    filler.unlink()
    assert saver.flush(10)
    saver.close()
    assert np.array_equal(MaskStore(small_disk / "masks").load("a", doc.shape), doc.mask)


class FsyncSpy:
    """Wraps os.fsync in this process: which files and folders were made durable, and when."""

    def __init__(self, monkeypatch):
        import time

        self.calls: list[tuple[float, str]] = []
        real = os.fsync

        def fsync(fd):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = f"fd {fd}"
            real(fd)
            self.calls.append((time.monotonic(), target))
        monkeypatch.setattr(os, "fsync", fsync)

    def synced(self, path) -> bool:
        return any(t == str(path) for _, t in self.calls)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fds")
def test_a_stroke_is_fsynced_before_it_is_acknowledged(tmp_path, monkeypatch):
    spy = FsyncSpy(monkeypatch)
    store = MaskStore(tmp_path / "masks")
    acked_after_sync = []

    def on_saved(image_id, n):
        acked_after_sync.append(spy.synced(store.journal_path(image_id)))
    saver = Autosaver(store, delay=0.001, on_saved=on_saved)
    doc = ImageDocument.blank(64, 64)
    doc.edited.connect(lambda t: saver.submit("a", doc.shape, t))
    _paint(doc, 0)
    assert saver.flush(10)
    assert acked_after_sync == [True], "a stroke was acknowledged before its journal was fsynced"
    assert spy.synced(tmp_path / "masks"), "a new journal's folder entry must be fsynced too"
    spy.calls.clear()
    saver.compact("a", doc.shape)                    # fold into the PNG: file, then folder
    assert saver.flush(10)
    saver.close()
    assert spy.synced(tmp_path / "masks"), "the rename into place must be made durable"
    assert any(t.startswith(str(tmp_path / "masks" / ".a.png.")) for _, t in spy.calls), \
        "the new PNG must be fsynced before it replaces the old one"
