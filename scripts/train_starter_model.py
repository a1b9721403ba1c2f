"""Train the starter model shipped in models/starter-nuclei/ on the bundled sample project.

    python scripts/train_starter_model.py [--minutes 4] [--out models/starter-nuclei]

Trains on a temporary copy (the repository's sample project is never written), then copies
the run's best.pt and model_card.json to --out. A new user gets predictions from it before
training anything; the app loads it like any run (segstudio.ml.runs.load_run_model(None, folder)).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "starter-nuclei")
    args = ap.parse_args()

    from segstudio.io.project import Project
    from segstudio.ml.allocator import tune_allocator
    from segstudio.ml.events import EpochDone
    from segstudio.ml.train import TrainConfig, train

    tune_allocator()
    with tempfile.TemporaryDirectory(prefix="segstudio-starter-") as tmp:
        root = Path(tmp) / "sample"
        shutil.copytree(REPO / "resources" / "sample_project", root,
                        ignore=shutil.ignore_patterns("runs", ".segstudio"))
        project = Project.open(root)
        cfg = TrainConfig(preset="fast", epochs=args.epochs, minutes=args.minutes,
                          steps_per_epoch=25, patch_size=128, batch_size=8, patience=None,
                          device="cpu", seed=0)

        def show(p) -> None:
            if isinstance(p, EpochDone):
                print(p.message, flush=True)

        result = train(project, cfg, on_progress=show)
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(result.run_dir / "best.pt", args.out / "best.pt")
        card = json.loads((result.run_dir / "model_card.json").read_text(encoding="utf-8"))
        card["checkpoints"] = {"best": "best.pt"}
        card["trained_by"] = "scripts/train_starter_model.py on resources/sample_project"
        (args.out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n",
                                                  encoding="utf-8")
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB); best epoch {result.best_epoch}: "
          f"val mean Dice {result.best_metrics.get('mean_dice', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
