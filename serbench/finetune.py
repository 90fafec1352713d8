"""Fine-tuning (the reference paper's recipe): conv feature encoder frozen, transformer + head trained.

AdamW at a peak learning rate of 5e-5 with a cosine schedule and 10 % linear warm-up, weight decay
0.01, 25 epochs, batch 16, early stopping with patience 6 on *validation* UA (the best validation
epoch's weights are restored), augmentation on, and the paper's objective (focal loss, gamma 2,
balanced alpha, label smoothing 0.1, shared with probe mode via :mod:`serbench.train`).

The head is the same :class:`~serbench.train.LayerWeightedProbe` as in probe mode, on the same
features: every hidden state mean-pooled over the utterance's speech. Each utterance goes through
the backbone at its own length (a batch is accumulated over single forward passes) rather than
zero-padded to 8 s: the wav2vec2-family conv encoder normalises over time, so padding would change
the features, and training would then see different features from the ones the compressed
backbone produces at evaluation (:mod:`serbench.embed` also embeds speech only). The backbone is
called through :func:`serbench.backbones.network` on its kind's frontend, what every exported
artefact is built from, so an entry with ``normalize: true`` is trained on per-clip normalised audio
(a Whisper encoder on its log-mel) exactly as it is evaluated. Uses a GPU when one is present.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from serbench import backbones, metrics, options, schema
from serbench.audio import Augment
from serbench.train import EarlyStopping, FocalLoss, LayerWeightedProbe, balanced_alpha, check_classes


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float = 5e-5
    epochs: int = 25
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup: float = 0.1
    patience: int = 6
    gamma: float = 2.0
    label_smoothing: float = 0.1
    augment: bool = True
    hidden: int = 256
    dropout: float = 0.2
    seed: int = 0
    device: str | None = None      # None: cuda if available, else cpu
    freeze_feature_encoder: bool = True   # the paper keeps the conv encoder fixed

    def __post_init__(self):
        schema.config(self, FIELDS)   # epochs=0 is refused here, never replaced by a default

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = schema.config_fields(FinetuneConfig, *options.FINETUNE)   # types and ranges: serbench.options


@dataclass
class FinetuneResult:
    backbone: torch.nn.Module
    head: LayerWeightedProbe
    history: list[dict]
    best_epoch: int
    best_val_ua: float
    config: dict
    device: str = "cpu"          # where it was trained ("cuda" when a GPU was visible)

    def summary(self) -> dict:
        return {"best_epoch": self.best_epoch, "best_val_ua": self.best_val_ua,
                "epochs": len(self.history), "history": self.history, "config": self.config,
                "layer_weights": [float(w) for w in self.head.layer_weights().detach().cpu()]}


def pooled_layers(net: torch.nn.Module, spec: dict, wave: np.ndarray, device=None) -> torch.Tensor:
    """(n_layers, dim): every hidden state for one waveform, mean over time.

    ``net`` is the backbone as :func:`serbench.backbones.network` wraps it (normalisation included
    when the entry asks for it), fed what the entry's frontend ``spec`` makes of the waveform: the
    same network, and the same input, as every artefact exported from it.
    """
    inputs = backbones.torch_inputs(spec, [np.ascontiguousarray(wave)])
    return net(*(x.to(device) if device is not None else x for x in inputs))[0].mean(dim=1)


def freeze_feature_encoder(entry, backbone: torch.nn.Module) -> None:
    """Freeze the convolutional front end the entry's kind declares (the paper keeps it fixed)."""
    for module in backbones.kind(entry).feature_encoder(backbone):
        for p in module.parameters():
            p.requires_grad = False


def finetune(backbone: torch.nn.Module, train_waves: list[np.ndarray], y_train, val_waves: list[np.ndarray],
             y_val, classes, config: FinetuneConfig = FinetuneConfig(), progress=None, *,
             entry) -> FinetuneResult:
    """Fine-tune ``backbone`` (built from the model ``entry``: a wav2vec2-family network or a Whisper
    encoder) with a fresh head.

    ``*_waves`` are preprocessed speech segments (16 kHz float32); test data is not an argument.
    ``progress`` is an optional callable ``(epoch, record)`` for a progress display. The entry's
    kind says what the backbone is fed (its frontend, e.g. per-clip normalisation or Whisper's
    log-mel) and what stays frozen, in training and validation, as in every artefact built from
    the result.
    """
    c = config
    classes = list(classes)
    check_classes(classes, {"training": y_train, "validation": y_val})
    yt, yv = metrics.encode(y_train, classes), metrics.encode(y_val, classes)
    device = torch.device(c.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rng = np.random.default_rng(c.seed)
    augment = Augment() if c.augment else None
    np_state = np.random.get_state()   # transformers' SpecAugment masking draws from numpy's global RNG
    np.random.seed(c.seed)
    try:
        return _finetune(backbone, entry, train_waves, yt, val_waves, yv, classes, c, device, rng, augment,
                         progress)
    finally:
        np.random.set_state(np_state)


def _finetune(backbone, entry, train_waves, yt, val_waves, yv, classes, c, device, rng, augment, progress):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        backbone = backbone.to(device)
        net = backbones.network(entry, backbone)  # train()/eval() on it reach the backbone
        spec = backbones.frontend(entry)
        if c.freeze_feature_encoder:
            freeze_feature_encoder(entry, backbone)
        n_layers = backbone.config.num_hidden_layers + 1
        head = LayerWeightedProbe(n_layers, backbone.config.hidden_size, len(classes), c.hidden, c.dropout).to(device)
        params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        steps_per_epoch = -(-len(train_waves) // c.batch_size)
        total = steps_per_epoch * c.epochs
        sched = get_cosine_schedule_with_warmup(opt, int(c.warmup * total), total)
        loss_fn = FocalLoss(balanced_alpha(yt, len(classes)), c.gamma, c.label_smoothing).to(device)

        history, stopper = [], EarlyStopping(c.patience)
        for epoch in range(1, c.epochs + 1):
            net.train()
            head.train()
            order = rng.permutation(len(train_waves))
            running = 0.0
            for start in range(0, len(order), c.batch_size):
                batch = order[start:start + c.batch_size]
                opt.zero_grad()
                feats = []
                for i in batch:
                    w = train_waves[i] if augment is None else augment(train_waves[i], rng)
                    feats.append(pooled_layers(net, spec, w, device))
                loss = loss_fn(head(torch.stack(feats)), torch.from_numpy(yt[batch]).to(device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                running += float(loss.detach()) * len(batch)
            val_pred, val_loss = _evaluate(net, spec, head, val_waves, yv, loss_fn, device)
            val_ua = metrics.ua(yv, val_pred, classes)
            record = {"epoch": epoch, "train_loss": running / len(order), "val_loss": val_loss,
                      "val_ua": val_ua, "lr": sched.get_last_lr()[0]}
            history.append(record)
            if progress:
                progress(epoch, record)
            if stopper.step((val_ua, -val_loss), (backbone.state_dict(), head.state_dict())):
                break
    backbone.load_state_dict(stopper.best_state[0])
    head.load_state_dict(stopper.best_state[1])
    return FinetuneResult(backbone.eval().cpu(), head.eval().cpu(), history, stopper.best_epoch,
                          float(stopper.best[0]), c.to_dict(), device.type)


def _evaluate(net, spec, head, waves, y, loss_fn, device) -> tuple[np.ndarray, float]:
    net.eval()
    head.eval()
    with torch.no_grad():
        feats = torch.stack([pooled_layers(net, spec, w, device) for w in waves])
        logits = head(feats)
        loss = float(loss_fn(logits, torch.from_numpy(y).to(device)))
    return logits.argmax(dim=1).cpu().numpy(), loss
