"""Train the starter click model shipped in models/starter-click-nuclei/.

    python scripts/train_starter_click_model.py DSB_DIR [--minutes 20]

DSB_DIR is the dsb2018_nuclei set (images/, instances/; CC0 1.0, BBBC038, Caicedo et al. 2019):
each stored nucleus is one object. Trains on the train and val images of benchmarks/accuracy.py's
name-hash split (its test images stay unseen, so benchmarks/interactive.py measures the starter
on them), CPU, one torch thread; writes best.pt (float16 weights, < 2 MB) and model_card.json
with licence/source.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "starter-click-nuclei")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from segstudio.ml.checkpoint import load_checkpoint, save_checkpoint
    from segstudio.ml.click_model import ClickConfig, click_data, train_click_model

    sys.path.insert(0, str(REPO / "benchmarks"))
    from accuracy import split_of

    ids = sorted(p.stem for p in (args.dataset / "images").glob("*.png") if split_of(p.stem) != "test")
    items = []
    for i in ids:
        img = np.asarray(Image.open(args.dataset / "images" / f"{i}.png"))[..., 0]
        inst = np.asarray(Image.open(args.dataset / "instances" / f"{i}.png")).astype(np.uint32)
        items.append((i, img, (inst > 0).astype(np.uint8), inst))
    data = click_data(items, frozenset({1}))
    cfg = ClickConfig(minutes=args.minutes, steps=100000, threads=1, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        res = train_click_model(data, cfg, runs_dir=tmp,
                                on_progress=lambda p: print(p.message, flush=True))
        ckpt = load_checkpoint(res.run_dir / "best.pt")
        card = json.loads((res.run_dir / "model_card.json").read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    save_checkpoint(args.out / "best.pt", ckpt["config"], half)
    card["licence"] = "CC0-1.0 (trained on dsb2018_nuclei: BBBC038, Caicedo et al. 2019)"
    card["trained_by"] = (f"scripts/train_starter_click_model.py on {len(ids)} dsb2018_nuclei "
                          f"images (train and val of accuracy.py's split), {args.minutes:g} min CPU")
    card["data"] = {"images": ids, "objects": len(data.objects)}
    (args.out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB), {res.steps} steps, loss {res.loss:.3f}")
    del torch
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
