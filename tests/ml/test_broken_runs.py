"""A broken run folder is listed as broken and refused in one line; it never breaks a listing."""

import json
import shutil
from pathlib import Path

import pytest

from segstudio.cli import main
from segstudio.ml.runs import RunError, list_runs, load_run_model, resolve_run_dir

STARTER = Path(__file__).resolve().parents[2] / "models" / "starter-nuclei"

BROKEN = {
    "metrics-x": ("card", lambda card: {**card, "metrics": "x"}, "'metrics' is a string"),
    "not-json": ("text", "{\"run_id\": \"not-json\", ", "not valid JSON"),
    "a-list": ("card", lambda card: [card], "holds a list, not an object"),
    "bad-dice": ("card", lambda card: {**card, "metrics": {"best": {"mean_dice": "high"}}},
                 "'metrics.best.mean_dice' is a string"),
}


def _runs_with_broken_ones(root: Path) -> Path:
    """runs/good (the starter model) plus one real checkpoint with each broken card."""
    runs = root / "runs"
    shutil.copytree(STARTER, runs / "good")
    card = json.loads((STARTER / "model_card.json").read_text(encoding="utf-8"))
    for name, (kind, make, _why) in BROKEN.items():
        shutil.copytree(STARTER, runs / name)
        text = make if kind == "text" else json.dumps(make(card))
        (runs / name / "model_card.json").write_text(text, encoding="utf-8")
    return runs


def test_broken_cards_are_listed_as_broken_and_skipped(sample_copy):
    from segstudio.ml.cards import list_run_cards

    runs = _runs_with_broken_ones(sample_copy)
    cards = {Path(c["run_dir"]).name: c for c in list_run_cards(runs)}
    assert set(cards) == {"good", *BROKEN}
    assert cards["good"]["broken"] is None and cards["good"]["has_checkpoint"]
    for name, (_kind, _make, why) in BROKEN.items():
        assert cards[name]["status"].startswith("broken: ") and why in cards[name]["status"], name
    assert [Path(c["run_dir"]).name for c in list_runs(runs)] == ["good"]
    # 'latest' never picks a broken run, however new its checkpoint
    (runs / "metrics-x" / "best.pt").touch()
    assert resolve_run_dir(sample_copy, "latest").name == "good"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_evaluate_and_predict_a_broken_run_say_so_in_one_line(sample_copy, tmp_path, capsys,
                                                              name):
    _runs_with_broken_ones(sample_copy)
    with pytest.raises(RunError, match=f"run '{name}' is broken: "):
        load_run_model(sample_copy, name)
    for argv in (["evaluate", str(sample_copy), "--run", name],
                 ["predict", str(sample_copy), "--run", name, "--out", str(tmp_path / "p")]):
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith(
            f"segstudio: error: run '{name}' is broken: "), err
        assert BROKEN[name][2] in err[0]
