"""Run a benchmark and keep its JSON line in benchmarks/results/<name>.jsonl with the context a
reader needs to trust it: date, CPU model, cores, load average before and after, and commit.

    python benchmarks/record.py benchmarks/gui_responsiveness.py --case project-ops
    python benchmarks/record.py --name anchor_gui_stall ../shared/anchors/gui_stall.py ...

`--name` chooses the results file (default: the script's name), so the anchors' lines, which
come from scripts outside this folder, are kept apart from the project's own.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv: list[str]) -> int:
    name = None
    if argv[:1] == ["--name"] and len(argv) > 2:
        name, argv = argv[1], argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    script = Path(argv[0])
    before = os.getloadavg()
    run = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    after = os.getloadavg()
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode != 0 or not lines:
        sys.stderr.write(run.stdout + run.stderr)
        return run.returncode or 1
    result = json.loads(lines[-1])
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "cpu": cpu_model(), "cores": os.cpu_count(),
              "load_before": [round(x, 2) for x in before],
              "load_after": [round(x, 2) for x in after],
              "commit": commit(), "command": " ".join(["python", *argv]), "result": result}
    out = REPO / "benchmarks" / "results" / f"{name or script.stem}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
