"""Heads as registry entries: fitted on train, chosen on validation, one torch module for all kinds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from serbench import heads
from serbench.errors import SerbenchError

CLASSES = ["angry", "happy", "neutral", "sad"]


def _data(n, seed, n_layers=3, dim=6, classes=CLASSES, shift=1.0):
    """Per-layer embeddings whose class shows (noisily) in every layer."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(classes), n)
    centres = np.random.default_rng(99).normal(0, 1, (len(classes), dim))
    X = rng.normal(0, 1.5, (n, n_layers, dim)) + shift * centres[y][:, None, :]
    return X.astype(np.float32), [classes[i] for i in y]


def _logits(head, X):
    with torch.no_grad():
        return head(torch.from_numpy(np.asarray(X, np.float32))).numpy()


@pytest.mark.parametrize("name", ["logreg", "svm-linear"])
def test_linear_heads_choose_C_on_validation_and_match_scikit_learn(name):
    entry = heads.load(name)
    Xt, yt = _data(240, 1)
    Xv, yv = _data(80, 2)
    Xs, _ = _data(60, 3)
    fitted = heads.fit(entry, Xt, yt, Xv, yv, CLASSES, seed=0)

    # The same choice made independently: mean over layers, scaler on train, best validation UA.
    pool = lambda X: X.mean(axis=1)  # noqa: E731
    scaler = StandardScaler().fit(pool(Xt))
    make = ((lambda C: LogisticRegression(C=C, class_weight="balanced", max_iter=5000)) if name == "logreg"
            else (lambda C: LinearSVC(C=C, class_weight="balanced", max_iter=20000, random_state=0)))
    scores = {C: balanced_accuracy_score(yv, make(C).fit(scaler.transform(pool(Xt)), yt)
                                         .predict(scaler.transform(pool(Xv))))
              for C in sorted(entry.options["C"])}
    best_C = max(scores, key=lambda C: (scores[C], -C))
    assert fitted.summary["selected"]["C"] == best_C
    assert fitted.summary["best_val_ua"] == pytest.approx(scores[best_C])
    assert [g["C"] for g in fitted.summary["grid"]] == sorted(entry.options["C"])

    # refit: the chosen C on train + validation, scaler included
    Xall, yall = np.concatenate([Xt, Xv]), yt + yv
    scaler = StandardScaler().fit(pool(Xall))
    ref = make(best_C).fit(scaler.transform(pool(Xall)), yall)
    assert fitted.summary["refit_on"] == "train+val"
    Z = scaler.transform(pool(Xs))
    ours = _logits(fitted.model, Xs)
    np.testing.assert_allclose(ours, ref.decision_function(Z), rtol=1e-3, atol=1e-3)
    assert [CLASSES[i] for i in ours.argmax(1)] == list(ref.predict(Z))
    if name == "logreg":
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(ours), 1).numpy(), ref.predict_proba(Z),
                                   atol=1e-4)


def test_layers_last_uses_only_the_last_layer():
    entry = heads.load("logreg")
    entry = heads.HeadEntry(**{**entry.__dict__, "options": {**entry.options, "layers": "last"}})
    Xt, yt = _data(120, 1)
    Xv, yv = _data(40, 2)
    fitted = heads.fit(entry, Xt, yt, Xv, yv, CLASSES)
    X, _ = _data(10, 3)
    changed = X.copy()
    changed[:, :-1] += 100.0                        # earlier layers must not matter
    np.testing.assert_allclose(_logits(fitted.model, X), _logits(fitted.model, changed), atol=1e-4)
    assert fitted.summary["layer_weights"] == [0.0, 0.0, 1.0]


def test_binary_linear_head_gives_scikit_learn_probabilities():
    two = ["neg", "pos"]
    Xt, yt = _data(120, 1, classes=two)
    Xv, yv = _data(40, 2, classes=two)
    entry = heads.load("logreg")
    entry = heads.HeadEntry(**{**entry.__dict__, "options": {**entry.options, "refit": False}})
    fitted = heads.fit(entry, Xt, yt, Xv, yv, two)
    assert fitted.summary["refit_on"] == "train"
    scaler = StandardScaler().fit(Xt.mean(1))
    ref = LogisticRegression(C=fitted.summary["selected"]["C"], class_weight="balanced",
                             max_iter=5000).fit(scaler.transform(Xt.mean(1)), yt)
    X, _ = _data(20, 3, classes=two)
    proba = torch.softmax(torch.from_numpy(_logits(fitted.model, X)), 1).numpy()
    np.testing.assert_allclose(proba, ref.predict_proba(scaler.transform(X.mean(1))), atol=1e-3)


@pytest.mark.parametrize("name", ["mlp", "logreg", "svm-linear"])
def test_saved_head_restores_to_the_same_outputs(name, tmp_path):
    entry = heads.load(name)
    if name == "mlp":
        entry = heads.HeadEntry(**{**entry.__dict__, "options": {**entry.options, "hidden": 16,
                                                                 "max_epochs": 5}})
    Xt, yt = _data(80, 1)
    Xv, yv = _data(40, 2)
    fitted = heads.fit(entry, Xt, yt, Xv, yv, CLASSES)
    heads.save(heads.dumps(fitted.model, CLASSES, entry.kind), tmp_path / "fold0.pt")
    restored, classes = heads.restore(tmp_path / "fold0.pt")
    X, _ = _data(15, 3)
    assert classes == CLASSES
    assert heads.shape(restored) == (3, 6)
    np.testing.assert_allclose(_logits(restored, X), _logits(fitted.model, X), atol=1e-6)
    assert not list(tmp_path.glob(".*tmp"))


def _registry(tmp_path, monkeypatch, text: str):
    folder = tmp_path / "reg" / "heads"
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(text)
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path / "reg"))
    return folder / "mine.yaml"


def test_a_head_is_added_by_dropping_a_file(tmp_path, monkeypatch):
    _registry(tmp_path, monkeypatch, "name: mine\nkind: logreg\noptions: {C: 0.5}\n")
    entry = heads.load("mine")
    assert entry.options["C"] == 0.5 and entry.options["layers"] == heads.KINDS["logreg"].defaults["layers"]
    Xt, yt = _data(80, 1)
    Xv, yv = _data(40, 2)
    assert heads.fit(entry, Xt, yt, Xv, yv, CLASSES).summary["selected"]["C"] == 0.5


@pytest.mark.parametrize("text, field", [
    ("name: mine\nkind: logreg\noptions: {Cs: [1]}\n", "options.Cs"),
    ("name: mine\nkind: logistic\n", "kind"),
    ("name: mine\nkind: logreg\nopts: {}\n", "opts"),
])
def test_a_bad_head_file_is_named_with_its_field(tmp_path, monkeypatch, text, field):
    path = _registry(tmp_path, monkeypatch, text)
    with pytest.raises(SerbenchError) as err:
        heads.load("mine")
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


def test_empty_validation_split_is_refused():
    Xt, yt = _data(40, 1)
    with pytest.raises(SerbenchError, match="validation"):
        heads.fit(heads.load("logreg"), Xt, yt, Xt[:0], [], CLASSES)
