import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from segstudio.core.jobs import Cancelled, CancelToken  # noqa: E402
from segstudio.io.project import Project  # noqa: E402
from segstudio.ml.evaluate import evaluate_project, label_components  # noqa: E402
from segstudio.ml.predict import Normalisation, TileOptions  # noqa: E402
from segstudio.ml.suggest import images_to_label, rank_images  # noqa: E402


class Brightness(nn.Module):
    """Per pixel: background when dark, class 1 when bright, unsure in between."""

    def forward(self, x):
        b = x.mean(dim=1, keepdim=True)
        return torch.cat([torch.zeros_like(b), 12 * b - 1], dim=1)


def test_label_components_counts_blobs():
    m = np.zeros((10, 10), bool)
    m[1:3, 1:3] = True
    m[5:8, 5:8] = True
    m[3, 3] = True                       # touches the first blob diagonally: 8-connected
    labels, n = label_components(m)
    assert n == 2 and labels.dtype == np.int32 and labels[3, 3] == labels[1, 1]
    assert label_components(m, connectivity=4)[1] == 3


def test_rank_images_by_uncertainty(sample_copy):
    project = Project.open(sample_copy)
    todo = images_to_label(project)
    assert {e.id for e in todo} >= {"nuclei_07", "nuclei_06"}
    assert "nuclei_01" not in {e.id for e in todo}     # fully labelled
    ranked = rank_images(project, Brightness(), Normalisation(in_channels=3),
                         options=TileOptions(tile=128))
    assert ranked and all(0.0 <= s.mean_entropy <= 1.0 for s in ranked)
    values = [s.mean_entropy for s in ranked]
    assert values == sorted(values, reverse=True)
    # the same numbers straight from a whole-image pass (the model is per-pixel)
    expected = {}
    for s in ranked:
        e = project.entry(s.image_id)
        image = project.read_image(e).data
        with torch.no_grad():
            p = torch.softmax(Brightness()(torch.from_numpy(
                Normalisation(in_channels=3)(image))[None]), 1)[0]
        ent = (torch.special.entr(p).sum(0) / np.log(2)).numpy()
        if project.masks.has_mask(e.id):
            unl = project.load_mask(e, image.shape[:2]) == 255
            ent = ent[unl] if unl.any() and not unl.all() else ent
        expected[s.image_id] = float(ent.mean())
        assert s.mean_entropy == pytest.approx(expected[s.image_id], abs=2e-3)
    order = [s.image_id for s in ranked]
    for i, a in enumerate(order):           # float16 maps: only clear differences must order
        for b in order[i + 1:]:
            assert expected[a] > expected[b] - 2e-3, (a, b)


def test_rank_images_cancel(sample_copy):
    project = Project.open(sample_copy)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        rank_images(project, Brightness(), Normalisation(in_channels=3), cancel=token)


def test_evaluate_project_progress_and_rows(sample_copy):
    project = Project.open(sample_copy)
    seen = []
    report = evaluate_project(project, Brightness(), Normalisation(in_channels=3),
                              options=TileOptions(tile=128), on_progress=seen.append)
    val = [e.id for e in project.images if e.split == "val" and project.masks.has_mask(e.id)]
    assert sorted(r.image_id for r in report.images) == sorted(val)
    assert seen[-1].done == seen[-1].total == len(val)
    assert report.scores.pixels == sum(r.pixels for r in report.images)
    assert 1 in report.instances and report.instances[1].true > 0


def test_evaluate_project_skips_a_broken_image(sample_copy):
    project = Project.open(sample_copy)
    broken = next(e for e in project.images if e.split == "val")
    project.image_path(broken).write_bytes(b"not a png")
    report = evaluate_project(project, Brightness(), Normalisation(in_channels=3),
                              options=TileOptions(tile=128))
    ids = [r.image_id for r in report.images]
    assert broken.id not in ids and ids
