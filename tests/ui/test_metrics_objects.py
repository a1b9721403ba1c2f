"""The Metrics panel shows object scores (AP per tau, PQ) beside the pixel scores."""

import numpy as np
import pytest

from segstudio.core.metrics import Evaluator
from segstudio.ml.evaluate import label_components
from segstudio.ui.panels.metrics_panel import OBJECT_COLUMNS, MetricsPanel


def report_of_touching_pair():
    truth = np.zeros((40, 60), np.uint8)
    truth[10:30, 10:49] = 1
    true_ids = np.zeros(truth.shape, np.int32)     # three touching objects, 13 px wide each
    true_ids[10:30, 10:23] = 1
    true_ids[10:30, 23:36] = 2
    true_ids[10:30, 36:49] = 3
    ev = Evaluator(2, class_names=["background", "nucleus"], instance_classes=(1,),
                   label_components=label_components)
    # predicted: the same pixels, but as one merged object (what connected regions give)
    ev.add(truth, truth.copy(), "merged", true_objects=true_ids)
    # predicted: both objects right
    ev.add(truth, truth.copy(), "split", true_objects=true_ids, pred_objects=true_ids)
    return ev.report()


def test_object_table_and_per_image_ap(qtbot):
    panel = MetricsPanel()
    qtbot.addWidget(panel)
    assert panel.objects.isHidden()
    report = report_of_touching_pair()
    panel.show_report(report, "run", "val")
    assert not panel.objects.isHidden() and panel.objects.rowCount() == 1
    cols = {panel.objects.horizontalHeaderItem(i).text(): i for i in range(len(OBJECT_COLUMNS))}
    row = {name: panel.objects.item(0, i) for name, i in cols.items()}
    assert row["class"].text() == "nucleus"
    assert row["true"].text() == "6" and row["predicted"].text() == "4"
    # the merged object overlaps each true one at IoU 1/3: TP 3, FP 1, FN 3 -> AP 3/7
    assert row["AP@0.5"].value == pytest.approx(3 / 7)
    assert "AP@0.5 0.429" in panel.summary.text()
    heads = [panel.images.horizontalHeaderItem(i).text() for i in range(panel.images.columnCount())]
    assert heads[5:] == ["AP@0.5", "mean AP", "objects"]
    by_image = {panel.images.item(r, 0).text(): panel.images.item(r, 5).value
                for r in range(panel.images.rowCount())}
    assert by_image == {"merged": 0.0, "split": 1.0}
