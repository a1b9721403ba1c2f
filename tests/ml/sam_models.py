"""Tiny randomly initialised SAM-style encoder/decoder pairs with the real graphs' inputs and outputs.

Layouts: "sam" (segment-anything's export: encoder "image" 1x3x1024x1024 -> "image_embeddings"
1x256x64x64; decoder image_embeddings, point_coords, point_labels, mask_input 1x1x256x256,
has_mask_input, orig_im_size -> masks, iou_predictions, low_res_masks) and "sam2" (samexporter /
X-AnyLabeling SAM 2 names, scaled down: encoder "image" 1x3x512x512 -> high_res_feats_0,
high_res_feats_1, image_embed; decoder without orig_im_size returning three low-res masks) and
"osam" ("sam" with osam's encoder names: input "x", output matched to the decoder by shape).

The decoder is not trained but is built to answer like one: each positive point raises the
logits within R px (in the encoder's frame) of it, each negative one lowers them, a box (labels
2, 3) raises its inside, plus a small random term from the embedding and the fed-back mask.
So a click's mask is a disk centred on the click: tests can check the geometry end to end.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

R = 48.0   # disk radius in the encoder's frame (px of the 1024 or 512 square)


class Encoder(nn.Module):
    def __init__(self, size: int, dims: list[tuple[int, int]]) -> None:
        super().__init__()
        self.size = size
        self.dims = dims         # (channels, side) of each output
        self.convs = nn.ModuleList(nn.Conv2d(3, c, 1) for c, _s in dims)

    def forward(self, image):
        outs = []
        for conv, (_c, side) in zip(self.convs, self.dims):
            outs.append(conv(F.avg_pool2d(image, self.size // side)))
        return tuple(outs)


class Decoder(nn.Module):
    def __init__(self, size: int, emb: int, side: int, n_masks: int, full_size: bool) -> None:
        super().__init__()
        self.size, self.low = size, 4 * side
        self.n_masks, self.full_size = n_masks, full_size
        self.head = nn.Conv2d(emb, n_masks, 1)
        self.iou = nn.Linear(emb, n_masks)

    def logits(self, emb, coords, labels, mask_input, has_mask_input):
        step = self.size / self.low
        g = (torch.arange(self.low, dtype=torch.float32) + 0.5) * step
        gy, gx = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)
        cx = coords[..., 0].unsqueeze(-1).unsqueeze(-1)
        cy = coords[..., 1].unsqueeze(-1).unsqueeze(-1)
        bump = torch.relu(1 - ((gx - cx) ** 2 + (gy - cy) ** 2) / (R * R))
        lab = labels.unsqueeze(-1).unsqueeze(-1)
        pos = ((lab == 1).float() * bump).sum(1, keepdim=True) * 4
        neg = ((lab == 0).float() * bump).sum(1, keepdim=True) * 8
        tl, br = (labels == 2).float(), (labels == 3).float()
        x0 = (coords[..., 0] * tl).sum(1).view(1, 1, 1, 1)
        y0 = (coords[..., 1] * tl).sum(1).view(1, 1, 1, 1)
        x1 = (coords[..., 0] * br).sum(1).view(1, 1, 1, 1)
        y1 = (coords[..., 1] * br).sum(1).view(1, 1, 1, 1)
        inside = (torch.sigmoid(gx - x0) * torch.sigmoid(x1 - gx)
                  * torch.sigmoid(gy - y0) * torch.sigmoid(y1 - gy))
        box = tl.sum(1).clamp(max=1).view(1, 1, 1, 1) * inside * 3
        learned = F.interpolate(self.head(emb), size=(self.low, self.low), mode="nearest")
        # a fed-back mask widens the answer a little: a test can tell it was fed
        fed = has_mask_input.view(1, 1, 1, 1) * torch.sigmoid(mask_input) * 0.5
        base = pos - neg + box - 0.5 + 0.01 * torch.tanh(learned) + fed
        iou = torch.sigmoid(self.iou(emb.mean((2, 3))))
        return base, iou


class SamDecoder(Decoder):
    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input,
                orig_im_size):
        low, iou = self.logits(image_embeddings, point_coords, point_labels, mask_input,
                               has_mask_input)
        low = low + 0 * orig_im_size.sum()
        masks = F.interpolate(low, size=(self.size, self.size), mode="bilinear",
                              align_corners=False)    # the padded square frame, as traced exports
        return masks, iou, low


class Sam2Decoder(Decoder):
    def forward(self, image_embed, high_res_feats_0, high_res_feats_1, point_coords,
                point_labels, mask_input, has_mask_input):
        low, iou = self.logits(image_embed, point_coords, point_labels, mask_input, has_mask_input)
        low = low + 0 * (high_res_feats_0.mean() + high_res_feats_1.mean())
        shift = torch.tensor([0.0, -2.0, -4.0]).view(1, 3, 1, 1)
        return low + shift, iou * torch.tensor([[0.5, 0.9, 0.1]])


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic or {}, opset_version=17, dynamo=False)


def export_pair(folder: Path, layout: str = "sam") -> tuple[Path, Path]:
    """Write <layout>.encoder.onnx and <layout>.decoder.onnx into folder; returns their paths."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    enc_path, dec_path = folder / f"{layout}.encoder.onnx", folder / f"{layout}.decoder.onnx"
    pts = {"point_coords": {1: "points"}, "point_labels": {1: "points"}}
    with torch.no_grad():
        if layout in ("sam", "osam"):
            enc = Encoder(1024, [(256, 64)])
            # osam's SAM encoder calls its input "x" and its output something else again
            names = (["image"], ["image_embeddings"]) if layout == "sam" else (["x"], ["output"])
            _export(enc, (torch.zeros(1, 3, 1024, 1024),), enc_path, *names)
            dec = SamDecoder(1024, 256, 64, 1, full_size=True)
            args = (torch.zeros(1, 256, 64, 64), torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]]),
                    torch.zeros(1, 1, 256, 256), torch.zeros(1), torch.tensor([600.0, 800.0]))
            _export(dec, args, dec_path, ["image_embeddings", "point_coords", "point_labels",
                                          "mask_input", "has_mask_input", "orig_im_size"],
                    ["masks", "iou_predictions", "low_res_masks"], pts)
        elif layout == "sam2":
            enc = Encoder(512, [(8, 128), (16, 64), (32, 32)])
            _export(enc, (torch.zeros(1, 3, 512, 512),), enc_path, ["image"],
                    ["high_res_feats_0", "high_res_feats_1", "image_embed"])
            dec = Sam2Decoder(512, 32, 32, 3, full_size=False)
            args = (torch.zeros(1, 32, 32, 32), torch.zeros(1, 8, 128, 128),
                    torch.zeros(1, 16, 64, 64), torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]]),
                    torch.zeros(1, 1, 128, 128), torch.zeros(1))
            _export(dec, args, dec_path, ["image_embed", "high_res_feats_0", "high_res_feats_1",
                                          "point_coords", "point_labels", "mask_input",
                                          "has_mask_input"],
                    ["masks", "iou_predictions"], pts)
        else:
            raise ValueError(layout)
    return enc_path, dec_path
