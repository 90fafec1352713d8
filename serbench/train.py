"""Training heads on cached embeddings: the paper's focal loss and the SUPERB-style probe.

Probe mode keeps the upstream model frozen: each utterance is already a stack of mean-pooled
per-layer embeddings ``(n_layers, dim)``, and the head learns a softmax-weighted sum of the layers
followed by a small MLP. Which layers carry emotion differs between backbones and changes under
compression, so the layer weights are learned rather than picking the last layer, and they are
returned so reports can show them.

No test-set peeking: the trainer never sees test labels (it takes none), standardisation is
fitted on the training split only, and early stopping and the kept checkpoint depend on the
validation split only. Everything random (initialisation, shuffling, dropout) is drawn from
``config.seed`` inside a forked RNG, so the same inputs and seed give bit-identical predictions
on the same machine and thread count, and the caller's global RNG state is left untouched.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from serbench import metrics, options, schema
from serbench.errors import SerbenchError


class FocalLoss(nn.Module):
    """Focal loss with class weights ``alpha`` and label smoothing (the reference paper's objective).

    With ``q`` the smoothed target distribution (``1 - eps`` on the true class plus ``eps / K``
    everywhere) and ``p`` the softmax, each example costs
    ``-sum_c q_c * alpha_c * (1 - p_c) ** gamma * log p_c``: well-classified classes (``p_c``
    near 1) are down-weighted, so training concentrates on the hard, confusable examples. The
    mean is taken like PyTorch's weighted cross-entropy (divided by the sum of ``alpha`` over the
    targets), so ``gamma=0`` is exactly ``F.cross_entropy(weight=alpha, label_smoothing=eps)``.
    """

    def __init__(self, alpha: torch.Tensor | None = None, gamma: float = 2.0,
                 label_smoothing: float = 0.1, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, not {reduction!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), not {label_smoothing}")
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, k = logits.shape
        log_p = F.log_softmax(logits, dim=1)
        q = torch.full_like(log_p, self.label_smoothing / k)
        q[torch.arange(n), target] += 1.0 - self.label_smoothing
        w = q if self.gamma == 0 else q * (1.0 - log_p.exp()).pow(self.gamma)
        alpha = self.alpha if self.alpha is not None else torch.ones(k, dtype=log_p.dtype, device=log_p.device)
        per_example = -(w * alpha * log_p).sum(dim=1)
        if self.reduction == "none":
            return per_example
        if self.reduction == "sum":
            return per_example.sum()
        return per_example.sum() / alpha[target].sum()


def check_classes(classes, splits: dict, where: str = "") -> None:
    """Refuse, before any training, a problem no head can learn: fewer than two classes (every
    head would then score 100 %, or scikit-learn would stop with its own traceback), or a class
    with no training example (balanced class weights and a linear head need each one). ``splits``:
    split name -> its labels (class names or indices into ``classes``), ``"training"`` among them;
    the error lists the labels found in each split. ``where`` names the fold."""
    classes = list(classes)
    counts = {name: Counter(classes[i] for i in metrics.encode(y, classes)) for name, y in splits.items()}
    found = "; ".join(f"{name}: " + (", ".join(f"{c} x{n}" for c, n in sorted(cnt.items())) or "none")
                      for name, cnt in counts.items())
    at = f"{where}: " if where else ""
    if len(classes) < 2:
        raise SerbenchError(f"{at}a one-class problem (classes: {classes}); a classifier needs at least two. "
                            f"Labels found: {found}. Check the corpus and its label map")
    missing = [c for c in classes if not counts["training"][c]]
    if missing:
        raise SerbenchError(f"{at}the training split has no example of class(es) {missing}, so no head can "
                            f"learn them. Labels found: {found}")


def balanced_alpha(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """``n / (K * count_c)`` per class (scikit-learn's "balanced"), from the training labels."""
    y = np.asarray(y)
    present = set(np.unique(y).tolist())
    if present != set(range(n_classes)):
        raise SerbenchError(
            f"the training split lacks class index(es) {sorted(set(range(n_classes)) - present)}; "
            "balanced class weights (and a meaningful head) need every class in training"
        )
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(n_classes), y=y), dtype=torch.float32)


class LayerWeightedProbe(nn.Module):
    """Standardise -> softmax-weighted sum over layers -> Linear-ReLU-Dropout-Linear.

    The standardisation statistics are buffers (fitted by the trainer on training data only), so a
    saved head is self-contained: it takes raw cached embeddings.
    """

    def __init__(self, n_layers: int, dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_layers, dim))
        self.register_buffer("scale", torch.ones(n_layers, dim))
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))  # equal weights to start
        self.head = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes),
        )

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.scale
        pooled = torch.einsum("bld,l->bd", x, self.layer_weights())
        return self.head(pooled)


class EarlyStopping:
    """Keep the best validation epoch's state; say stop after ``patience`` epochs without a better one.

    The one early-stopping rule of probe training and fine-tuning: ``score`` is compared with
    ``>`` (a tuple such as ``(val_ua, -val_loss)`` breaks ties on validation loss), so only a
    strictly better epoch replaces the kept one and, of equal scores, the earlier epoch stays.
    ``state`` is deep-copied only when it is kept (a model's ``state_dict()`` holds references).
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best = None          # the kept epoch's score
        self.best_state = None    # its state, a deep copy
        self.best_epoch = 0       # 1-based
        self.epochs = self.waited = 0

    def step(self, score, state) -> bool:
        """Record one epoch's ``score`` and ``state``; True when training should stop."""
        self.epochs += 1
        if self.best is None or score > self.best:
            self.best, self.best_epoch, self.waited = score, self.epochs, 0
            self.best_state = copy.deepcopy(state)
            return False
        self.waited += 1
        return self.waited >= self.patience


@dataclass(frozen=True)
class ProbeConfig:
    hidden: int = 256
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    # The layer weights get their own, larger step and no weight decay: a few hundred steps at the
    # head's rate barely move them off uniform, and decay would pull them back towards uniform.
    layer_lr: float = 2e-2
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 10  # epochs without a better validation score before stopping
    gamma: float = 2.0
    label_smoothing: float = 0.1
    seed: int = 0
    # torch intra-op threads while training (restored after). The head is tiny, so extra threads
    # buy nothing, and on busy cores torch's thread pool can make each step tens of times slower;
    # one thread also makes results independent of the machine's core count. None: leave as is.
    threads: int | None = 1

    def __post_init__(self):
        schema.config(self, FIELDS)   # from Python or a head file (options.max_epochs: 0): the same ranges

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = schema.config_fields(ProbeConfig, *options.PROBE)   # types and ranges: serbench.options


@dataclass
class ProbeResult:
    """Validation predictions (class indices) and how training went.

    ``history`` is one plain dict per epoch (``epoch``, ``train_loss``, ``val_loss``, ``val_ua``,
    ``val_wa``); ``best_epoch`` is the epoch whose weights were kept. ``model`` is the restored
    best head (in eval mode): test predictions are :func:`predict` on it, after training, so
    test data cannot reach training. Everything else is plain data (see :meth:`summary`).
    """

    val_pred: np.ndarray
    history: list[dict]
    best_epoch: int
    best_val_ua: float
    layer_weights: list[float]
    config: dict
    model: LayerWeightedProbe = field(repr=False)

    def summary(self) -> dict:
        """JSON-ready training record for the results store."""
        return {"best_epoch": self.best_epoch, "best_val_ua": self.best_val_ua, "epochs": len(self.history),
                "layer_weights": self.layer_weights, "history": self.history, "config": self.config}


def train_probe(
    X_train: np.ndarray, y_train, X_val: np.ndarray, y_val, classes, config: ProbeConfig = ProbeConfig(),
) -> ProbeResult:
    """Train a :class:`LayerWeightedProbe` with focal loss and early stopping on validation UA.

    ``X_*`` are float arrays ``(n, n_layers, dim)`` (a 2-D ``(n, dim)`` array is one layer);
    ``y_*`` class names or indices into ``classes``. Test data are not an argument on purpose.
    Each epoch the head is scored on validation; the best epoch (highest UA, ties broken by
    lower validation loss) is kept, and training stops after ``patience`` epochs without one.
    """
    classes = list(classes)
    X_train, X_val = as_3d(X_train, "X_train"), as_3d(X_val, "X_val")
    check_classes(classes, {"training": y_train, "validation": y_val})
    yt, yv = metrics.encode(y_train, classes), metrics.encode(y_val, classes)
    if len(yt) != len(X_train) or len(yv) != len(X_val):
        raise ValueError("each X needs one label per row")
    if len(yv) == 0:
        raise SerbenchError("the validation split is empty; early stopping needs one")
    if X_train.shape[1:] != X_val.shape[1:]:
        raise ValueError(f"train/val embeddings differ in shape: {X_train.shape[1:]} vs {X_val.shape[1:]}")
    alpha = balanced_alpha(yt, len(classes))

    scaler = StandardScaler().fit(X_train.reshape(len(X_train), -1))
    c = config
    threads = torch.get_num_threads()
    if c.threads:
        torch.set_num_threads(c.threads)
    try:
        return _fit(X_train, yt, X_val, yv, classes, alpha, scaler, c)
    finally:
        torch.set_num_threads(threads)


def _fit(X_train, yt, X_val, yv, classes, alpha, scaler, c: ProbeConfig) -> ProbeResult:
    n_layers, dim = X_train.shape[1:]
    k = len(classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        gen = torch.Generator().manual_seed(c.seed)
        model = LayerWeightedProbe(n_layers, dim, k, c.hidden, c.dropout)
        model.mean.copy_(torch.from_numpy(scaler.mean_.reshape(n_layers, dim)))
        model.scale.copy_(torch.from_numpy(scaler.scale_.reshape(n_layers, dim)))
        loss_fn = FocalLoss(alpha, c.gamma, c.label_smoothing)
        opt = torch.optim.AdamW([
            {"params": model.head.parameters()},
            {"params": [model.layer_logits], "lr": c.layer_lr, "weight_decay": 0.0},
        ], lr=c.lr, weight_decay=c.weight_decay)
        xt, tt = torch.from_numpy(X_train), torch.from_numpy(yt)
        xv, tv = torch.from_numpy(X_val), torch.from_numpy(yv)

        history: list[dict] = []
        stopper = EarlyStopping(c.patience)
        for epoch in range(1, c.max_epochs + 1):
            model.train()
            total = 0.0
            for idx in torch.randperm(len(xt), generator=gen).split(c.batch_size):
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), tt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            model.eval()
            with torch.no_grad():
                logits = model(xv)
                val_loss = float(loss_fn(logits, tv))
            pred = logits.argmax(dim=1).numpy()
            val_ua = metrics.ua(yv, pred, classes)
            history.append({"epoch": epoch, "train_loss": total / len(xt), "val_loss": val_loss,
                            "val_ua": val_ua, "val_wa": float((pred == yv).mean())})
            if stopper.step((val_ua, -val_loss), model.state_dict()):
                break
        model.load_state_dict(stopper.best_state)
        model.eval()

    return ProbeResult(
        val_pred=predict(model, X_val)[0], history=history,
        best_epoch=stopper.best_epoch, best_val_ua=float(stopper.best[0]),
        layer_weights=[float(w) for w in model.layer_weights().detach()], config=c.to_dict(), model=model,
    )


def predict(model: nn.Module, X: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and softmax probabilities of ``model`` on ``X`` (eval mode, no gradients)."""
    X = as_3d(X, "X")
    model.eval()
    with torch.no_grad():
        chunks = [torch.softmax(model(torch.from_numpy(X[i:i + batch_size])), dim=1)
                  for i in range(0, max(len(X), 1), batch_size)]  # an empty X still gives (0, K)
    proba = torch.cat(chunks).numpy()
    return proba.argmax(axis=1), proba


def as_3d(X: np.ndarray, name: str) -> np.ndarray:
    """Embeddings as contiguous float32 ``(n, n_layers, dim)``; a 2-D ``(n, dim)`` array is one layer.
    Every head kind takes this shape (:mod:`serbench.heads`)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim == 2:
        X = X[:, None, :]
    if X.ndim != 3:
        raise ValueError(f"{name} must be (n, n_layers, dim) or (n, dim), got shape {X.shape}")
    return X
