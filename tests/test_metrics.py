import numpy as np
import pytest

from serbench import metrics

CLASSES = ("angry", "happy", "neutral", "sad")


def paper_case():
    """The reference paper's RAVDESS result: per-class recalls .97/.03/.20/.64 over
    192/192/288/192 clips (calm counted as neutral).

    Whole clips: 187/192 = .974, 6/192 = .031, 58/288 = .201, 123/192 = .641 (rounding each recall
    to the nearest clip instead, 186 angry, gives 43.2% / 46.0%, which is not what was reported).
    The errors are spread over the other classes; only the diagonal matters for UA and WA.
    """
    rows = {  # true class -> counts predicted as angry, happy, neutral, sad
        "angry": [187, 1, 2, 2],
        "happy": [100, 6, 50, 36],
        "neutral": [40, 10, 58, 180],
        "sad": [9, 20, 40, 123],
    }
    y_true, y_pred = [], []
    for true, counts in rows.items():
        for pred, n in zip(CLASSES, counts):
            y_true += [true] * n
            y_pred += [pred] * n
    return y_true, y_pred, rows


def test_fixed_case_accuracy_and_ua():
    y_true, y_pred, rows = paper_case()
    s = metrics.scores(y_true, y_pred, CLASSES)
    assert s["n"] == 864
    assert s["support"] == {"angry": 192, "happy": 192, "neutral": 288, "sad": 192}
    assert s["wa"] * 100 == pytest.approx(43.3, abs=0.1)
    assert s["ua"] * 100 == pytest.approx(46.2, abs=0.1)
    assert [round(s["recall"][c], 2) for c in CLASSES] == [0.97, 0.03, 0.20, 0.64]
    assert s["confusion"] == [rows[c] for c in CLASSES]
    # UA is balanced accuracy; it differs from WA because neutral has 1.5x the clips
    assert s["ua"] - s["wa"] == pytest.approx(0.0289, abs=5e-4)


def test_f1_matches_hand_computation():
    y_true, y_pred, rows = paper_case()
    s = metrics.scores(y_true, y_pred, CLASSES)
    cm = np.array([rows[c] for c in CLASSES])
    precision = np.diag(cm) / cm.sum(axis=0)
    recall = np.diag(cm) / cm.sum(axis=1)
    f1 = 2 * precision * recall / (precision + recall)
    assert [s["f1"][c] for c in CLASSES] == pytest.approx(list(f1))
    assert s["macro_f1"] == pytest.approx(f1.mean())


def test_indices_and_names_agree():
    y_true, y_pred, _ = paper_case()
    idx = {c: i for i, c in enumerate(CLASSES)}
    by_name = metrics.scores(y_true, y_pred, CLASSES)
    by_index = metrics.scores([idx[c] for c in y_true], np.array([idx[c] for c in y_pred]), CLASSES)
    assert by_name == by_index


def test_absent_class_is_not_counted_as_zero_recall():
    # no "sad" in the truth; one sad prediction is a false positive
    y_true = ["angry", "angry", "happy", "neutral"]
    y_pred = ["angry", "sad", "happy", "neutral"]
    s = metrics.scores(y_true, y_pred, CLASSES)
    assert s["recall"]["sad"] is None
    assert s["ua"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics.ua(y_true, y_pred, CLASSES) == pytest.approx(s["ua"])
    assert s["f1"]["sad"] == 0.0  # predicted but never true: counts against macro-F1
    assert s["confusion"][0] == [1, 0, 0, 1]


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="calm"):
        metrics.scores(["angry", "calm"], ["angry", "angry"], CLASSES)
    with pytest.raises(ValueError, match="outside"):
        metrics.scores([0, 4], [0, 0], CLASSES)


def test_normalised_confusion():
    cm = [[3, 1], [0, 0]]
    rows = metrics.normalised_confusion(cm, "true")
    assert rows.tolist() == [[0.75, 0.25], [0.0, 0.0]]
    cols = metrics.normalised_confusion(cm, "pred")
    assert cols.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert metrics.normalised_confusion(cm, "all").sum() == pytest.approx(1.0)


def test_aggregate_mean_std_and_pooled_confusion():
    a = metrics.scores(["angry", "happy", "neutral", "sad"], ["angry", "happy", "neutral", "sad"], CLASSES)
    b = metrics.scores(["angry", "happy", "neutral", "sad"], ["angry", "angry", "neutral", "neutral"], CLASSES)
    agg = metrics.aggregate([a, b])
    assert agg["folds"] == 2
    assert agg["ua"]["mean"] == pytest.approx(0.75)
    assert agg["ua"]["std"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert agg["recall"]["happy"] == {"mean": 0.5, "std": pytest.approx(np.std([1, 0], ddof=1))}
    assert np.array(agg["confusion"]).sum() == 8
    assert agg["confusion"][1] == [1, 1, 0, 0]
    single = metrics.aggregate([a])
    assert single["ua"] == {"mean": 1.0, "std": None}
    assert metrics.aggregate([a, b], ddof=0)["ua"]["std"] == pytest.approx(0.25)
