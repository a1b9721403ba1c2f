"""nnU-Net v2 raw dataset: imagesTr/, labelsTr/, imagesTs/, dataset.json.

Follows nnU-Net's documentation/dataset_format.md and ignore_label.md:

- a case `<id>` has one image file per input channel, `<id>_0000<ending>`, `<id>_0001...`;
  RGB natural images are the one exception: one RGB PNG, channel_names R, G, B;
- its label map `<id><ending>` holds consecutive integers 0..N with background 0; pixels
  not labelled get the "ignore" label, declared in dataset.json as the highest value
  (declared only when some pixel has it: nnU-Net switches to sparse-label training then);
- one file ending for the whole dataset: `.nii.gz` when the project has volumes (NIfTI or
  DICOM sources; 2-D images are left out, with a note), else `.png` (2-D images;
  grey or RGB for all, never mixed: grey images become RGB when any image is colour);
- the project's train and val images are training cases (nnU-Net cross-validates itself;
  `splits_segstudio.json` has the project's own split in nnU-Net's splits_final.json form),
  test images go to imagesTs/ (their labels to labelsTs/, which nnU-Net does not read).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.io.formats.base import (ExportContext, ExportError, Item, register_writer,
                                       write_frame)
from segstudio.io.project import ImageEntry

log = logging.getLogger(__name__)

IGNORE = "ignore"       # nnU-Net's reserved label name


def _tr(split: str) -> str:
    return "Ts" if split == "test" else "Tr"


@register_writer("nnunet", label="nnU-Net",
                 description="nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json)")
class NnunetWriter:
    """imagesTr/<case>_0000.<ending>, labelsTr/<case>.<ending>, dataset.json."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry],
              splits: dict[str, str]) -> list[Item]:
        from segstudio.io.formats.writers import _group_by_file

        classes = ctx.plan.classes
        taken = [c.name for c in classes if c.name.casefold() == IGNORE]
        if taken:
            raise ExportError(f"class {taken[0]!r}: nnU-Net reserves the label name 'ignore' "
                              f"for unlabeled pixels; rename the class to export as nnU-Net")
        # exported ids (renumbered or not) -> 0..N in class order; the rest -> ignore (N + 1)
        self.ignore = len(classes)
        self.lut = np.full(256, self.ignore, np.uint8)
        for i, c in enumerate(classes):
            self.lut[c.id] = i
        volumes, rest = _group_by_file(ctx, entries, splits, ("nifti", "dicom"))
        if volumes:
            self.ending = ".nii.gz"
            ctx.notes += [f"{e.display_name}: a 2-D image; nnU-Net takes one file type per "
                          f"dataset and this one is NIfTI (the project has volumes)"
                          for e in rest]
            self.rgb = False
            return volumes
        self.ending = ".png"
        self.rgb = any(ctx.info(e).channels >= 3 for e in rest)
        return [Item(e.id, splits[e.id], [e]) for e in rest]

    # -- one case ------------------------------------------------------------------------
    def write_item(self, ctx: ExportContext, item: Item) -> dict[str, Any]:
        if self.ending == ".png":
            return self._write_png(ctx, item)
        return self._write_volume(ctx, item)

    def _write_png(self, ctx: ExportContext, item: Item) -> dict[str, Any]:
        entry = item.entries[0]
        info = ctx.info(entry)
        labels = self.lut[ctx.mask(entry, info)]
        tr = _tr(item.split)
        if ctx.options.images != "none":
            data = np.asarray(ctx.project.read_image(entry).data)
            if data.ndim == 3 and data.shape[2] == 1:
                data = data[:, :, 0]
            if self.rgb and (data.ndim == 2 or data.shape[2] < 3):
                grey = data if data.ndim == 2 else data[:, :, 0]
                data = np.repeat(grey[:, :, None], 3, axis=2)
            elif self.rgb:
                data = data[:, :, :3]                  # RGBA: nnU-Net reads R, G, B
            elif data.ndim == 3:          # two channels and the like: nnU-Net wants one per file
                for k in range(data.shape[2]):
                    write_frame(np.ascontiguousarray(data[:, :, k]),
                                ctx.folder(f"images{tr}") / f"{item.key}_{k:04d}.png")
                data = None
            if data is not None:
                write_frame(np.ascontiguousarray(data),
                            ctx.folder(f"images{tr}") / f"{item.key}_0000.png")
        write_frame(labels, ctx.folder(f"labels{tr}") / f"{item.key}.png")
        return {"case": item.key, "ignore": bool((labels == self.ignore).any()),
                "channels": 3 if self.rgb else max(1, info.channels)}

    def _write_volume(self, ctx: ExportContext, item: Item) -> dict[str, Any]:
        from segstudio.io.formats.medical import nifti_volume, write_nifti
        from segstudio.io.formats.writers import _masks_of

        first = item.entries[0]
        info = ctx.info(first)
        masks = {k: self.lut[m] for k, m in _masks_of(ctx, item).items()}
        tr = _tr(item.split)
        src = ctx.project.image_path(first)
        if info.kind == "nifti":
            shape = tuple(info.extra["volume_shape"])[:3]
            affine = np.asarray(info.extra["affine"], np.float64)
            record = ctx.project.series.get(first.series) if first.series is not None else None
            only = record.volume if record is not None else None
            if only is not None:      # one volume of a 4-D file: a case of its own
                slice_of = {e.frame: e.slice for e in item.entries}
                masks = {slice_of[f]: m for f, m in masks.items()}
            channels, name = self._nifti_channels(ctx, src, item.key, tr, only)
        else:
            channels, name, shape, affine, masks = self._dicom_channels(ctx, src, item.key, tr,
                                                                         masks)
        volume = nifti_volume(masks, shape, self.ignore)     # slices without a mask: ignore
        write_nifti(ctx.folder(f"labels{tr}") / f"{item.key}.nii.gz", volume, affine)
        return {"case": item.key, "ignore": bool((volume == self.ignore).any()),
                "channels": channels, "channel_name": name}

    def _nifti_channels(self, ctx: ExportContext, src: Path, key: str, tr: str,
                        only: int | None = None) -> tuple[int, str]:
        """The file's volumes as the case's channels (`only`: that one volume, as channel 0)."""
        import nibabel as nib

        img = nib.load(str(src))
        n = int(img.shape[3]) if len(img.shape) == 4 else 1
        volumes = [only] if only is not None else list(range(n))
        if ctx.options.images != "none":
            for k, t in enumerate(volumes):
                part = img.dataobj[..., t] if n > 1 else np.asanyarray(img.dataobj)
                out = nib.Nifti1Image(np.asarray(part), img.affine, img.header)
                nib.save(out, str(ctx.folder(f"images{tr}") / f"{key}_{k:04d}.nii.gz"))
        return len(volumes), "image"

    def _dicom_channels(self, ctx: ExportContext, src: Path, key: str, tr: str,
                        masks: dict) -> tuple[int, str, tuple[int, ...], Any, dict]:
        import pydicom

        from segstudio.io.formats.medical import dicom_affine

        ds = pydicom.dcmread(src)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        shape = (int(ds.Columns), int(ds.Rows), frames)
        affine = dicom_affine(ds)
        if ctx.options.images != "none":
            try:
                from pydicom.pixels import apply_modality_lut
            except ImportError:                       # pydicom 2
                from pydicom.pixel_data_handlers.util import apply_modality_lut
            pixels = np.asarray(apply_modality_lut(ds.pixel_array, ds))
            pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
            vol = np.ascontiguousarray(np.transpose(pixels, (2, 1, 0)))   # (x, y, z)
            vol = vol.astype(np.int16 if np.allclose(vol, np.round(vol)) and
                             vol.min() >= -32768 and vol.max() <= 32767 else np.float32)
            write_nifti_image(ctx.folder(f"images{tr}") / f"{key}_0000.nii.gz", vol, affine)
        modality = str(getattr(ds, "Modality", "") or "image")
        return 1, modality, shape, affine, {k or 0: m for k, m in masks.items()}

    # -- the dataset -----------------------------------------------------------------------
    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        counts = {r["channels"] for _, r in results}
        if len(counts) > 1:
            by = {n: [r["case"] for _, r in results if r["channels"] == n][:3] for n in counts}
            raise ExportError(f"nnU-Net needs the same input channels for every case; these "
                              f"differ: {by}")
        n = counts.pop()
        if self.rgb:
            names = {"0": "R", "1": "G", "2": "B"}
        elif self.ending == ".png":
            names = {str(k): ("grey" if n == 1 else f"channel {k}") for k in range(n)}
        else:
            kinds = {r.get("channel_name", "image") for _, r in results}
            # "CT" picks nnU-Net's CT normalisation (HU are comparable between scans)
            name = "CT" if kinds == {"CT"} else "image"
            names = {str(k): name if n == 1 else f"{name} {k}" for k in range(n)}
        labels = {c.name: i for i, c in enumerate(ctx.plan.classes)}
        if any(r["ignore"] for _, r in results):
            labels[IGNORE] = self.ignore
        training = [r["case"] for item, r in results if item.split != "test"]
        doc = {"name": ctx.project.name,
               "description": f"{ctx.project.name} (SegStudio export)",
               "channel_names": names, "labels": labels, "numTraining": len(training),
               "file_ending": self.ending}
        (ctx.root / "dataset.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False)
                                               + "\n", encoding="utf-8")
        split = [{"train": [r["case"] for item, r in results if item.split == "train"],
                  "val": [r["case"] for item, r in results if item.split == "val"]}]
        (ctx.root / "splits_segstudio.json").write_text(json.dumps(split, indent=1) + "\n",
                                                        encoding="utf-8")
        ctx.folder("imagesTr")
        ctx.folder("labelsTr")


def write_nifti_image(path: Path, volume: np.ndarray, affine: np.ndarray | None) -> None:
    """An image volume with the geometry of its label map (same affine, same codes)."""
    import nibabel as nib

    img = nib.Nifti1Image(volume, np.eye(4) if affine is None else np.asarray(affine, np.float64))
    code = 1 if affine is not None else 0
    img.set_qform(img.affine, code=code)
    img.set_sform(img.affine, code=code)
    nib.save(img, str(path))
