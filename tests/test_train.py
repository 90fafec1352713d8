import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from serbench.errors import SerbenchError
from serbench.train import FocalLoss, ProbeConfig, balanced_alpha, predict, train_probe

CLASSES = ("angry", "happy", "neutral", "sad")
FAST = ProbeConfig(hidden=32, max_epochs=40, patience=5)


def blobs(n: int, layers: int = 4, dim: int = 16, informative: int = 2, sep: float = 1.5, seed: int = 0):
    """Labels in 0..3 (imbalanced) whose class signal lives in one layer only; the rest is noise."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(4, dim)) * sep
    y = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    X = rng.normal(size=(n, layers, dim)).astype(np.float32)
    X[:, informative] += centers[y]
    return X, y


def test_focal_with_gamma_zero_is_weighted_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(16, 4, requires_grad=True)
    target = torch.randint(0, 4, (16,))
    alpha = torch.tensor([0.5, 2.0, 1.0, 3.0])
    ours = FocalLoss(alpha, gamma=0.0, label_smoothing=0.1)(logits, target)
    ref = F.cross_entropy(logits, target, weight=alpha, label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-7)
    plain = FocalLoss(None, gamma=0.0, label_smoothing=0.0)(logits, target)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)


def test_focal_down_weights_easy_examples():
    target = torch.tensor([0, 0])
    logits = torch.tensor([[6.0, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0]])  # easy, hard
    ce = FocalLoss(gamma=0.0, label_smoothing=0.0, reduction="none")(logits, target)
    focal = FocalLoss(gamma=2.0, label_smoothing=0.0, reduction="none")(logits, target)
    assert torch.all(focal < ce)
    assert (focal[0] / ce[0]) < 0.01 < (focal[1] / ce[1])  # the easy one loses far more weight
    p = torch.softmax(logits, 1)[:, 0]
    assert torch.allclose(focal, -(1 - p) ** 2 * torch.log(p))  # Lin et al.'s form without smoothing


def test_balanced_alpha_is_sklearn_balanced():
    y = np.array([0] * 6 + [1] * 3 + [2] * 2 + [3] * 1)
    assert balanced_alpha(y, 4).tolist() == pytest.approx([12 / 24, 12 / 12, 12 / 8, 12 / 4])
    with pytest.raises(SerbenchError, match="lacks class"):
        balanced_alpha(np.array([0, 1, 2]), 4)


def test_probe_learns_and_finds_the_informative_layer():
    Xt, yt = blobs(400, seed=1)
    Xv, yv = blobs(120, seed=2)
    Xs, ys = blobs(200, seed=3)
    r = train_probe(Xt, [CLASSES[i] for i in yt], Xv, yv, CLASSES, FAST)
    pred, proba = predict(r.model, Xs)
    ua = np.mean([(pred[ys == c] == c).mean() for c in range(4)])
    assert ua > 0.8  # chance is 0.25
    assert int(np.argmax(r.layer_weights)) == 2
    assert proba.shape == (200, 4) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert r.val_pred.shape == (120,)
    assert set(r.history[0]) == {"epoch", "train_loss", "val_loss", "val_ua", "val_wa"}


def test_same_seed_same_predictions_other_seed_differs():
    Xt, yt = blobs(200, seed=1)
    Xv, yv = blobs(60, seed=2)
    Xs, _ = blobs(80, seed=3)
    state = torch.random.get_rng_state()
    a = train_probe(Xt, yt, Xv, yv, CLASSES, FAST)
    b = train_probe(Xt, yt, Xv, yv, CLASSES, FAST)
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    assert np.array_equal(predict(a.model, Xs)[1], predict(b.model, Xs)[1]) and a.history == b.history
    c = train_probe(Xt, yt, Xv, yv, CLASSES, ProbeConfig(hidden=32, max_epochs=40, patience=5, seed=1))
    assert not np.array_equal(predict(a.model, Xs)[1], predict(c.model, Xs)[1])


def test_test_data_cannot_influence_training():
    Xt, yt = blobs(200, seed=1)
    Xv, yv = blobs(60, seed=2)
    # test data are not an argument of training: they can only be predicted on its result
    assert not {"X_test", "y_test"} & set(inspect.signature(train_probe).parameters)
    a = train_probe(Xt, yt, Xv, yv, CLASSES, FAST)
    # standardisation statistics come from training data only
    assert np.allclose(a.model.mean.numpy(), Xt.mean(axis=0), atol=1e-5)


def test_early_stopping_keeps_best_validation_epoch():
    Xt, yt = blobs(200, seed=1, sep=0.6)
    Xv, yv = blobs(60, seed=2, sep=0.6)
    cfg = ProbeConfig(hidden=32, max_epochs=200, patience=4)
    r = train_probe(Xt, yt, Xv, yv, CLASSES, cfg)
    uas = [h["val_ua"] for h in r.history]
    assert len(r.history) < 200  # stopped early
    assert len(r.history) == r.best_epoch + cfg.patience
    assert r.best_val_ua == max(uas) == uas[r.best_epoch - 1]
    restored = np.mean([(r.val_pred[yv == c] == c).mean() for c in range(4)])
    assert restored == pytest.approx(r.best_val_ua)  # the kept weights are the best epoch's
    assert r.summary()["epochs"] == len(r.history)


def test_learns_at_base_model_scale():
    # 13 layers x 768 dims, as wav2vec2-base / HuBERT-base give (its speed is a benchmark's job,
    # not a timed unit test: see benchmarks/)
    Xt, yt = blobs(1000, layers=13, dim=768, informative=6, sep=0.15, seed=1)
    Xv, yv = blobs(200, layers=13, dim=768, informative=6, sep=0.15, seed=2)
    r = train_probe(Xt, yt, Xv, yv, CLASSES)
    assert r.best_val_ua > 0.6
