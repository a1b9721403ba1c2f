import numpy as np

from segstudio.core.metrics import confusion_matrix, iou_dice, mean_over


def test_confusion_matrix_ignores_unlabeled_and_absent_class_is_nan():
    true = np.array([[0, 0, 1], [1, 255, 255], [0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 0], [0, 1, 0]], np.uint8)
    cm = confusion_matrix(true, pred, 4)
    assert cm.sum() == 7                       # the two 255 pixels are left out
    assert cm[0, 0] == 2 and cm[0, 1] == 1 and cm[1, 1] == 3 and cm[1, 0] == 1
    iou, dice = iou_dice(cm)
    assert np.isclose(iou[1], 3 / 5) and np.isclose(dice[1], 6 / 8)
    assert np.isclose(iou[0], 2 / 4)
    assert np.isnan(iou[2]) and np.isnan(dice[3])   # never true, never predicted
    assert np.isclose(mean_over(dice, [1, 2, 3]), 0.75)
    assert np.isnan(mean_over(dice, [2, 3]))
