"""Fine-tuning mechanics on a tiny HuBERT: what trains, what stays frozen, what is selected on."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel

from serbench import registry
from serbench.backbones import stacked
from serbench.finetune import FinetuneConfig, finetune, pooled_layers
from serbench.synth import voice

CLASSES = ["angry", "sad"]
TINY = registry.load_model("tiny")      # the entry whose architecture tiny_backbone() builds
NORMALISED = dataclasses.replace(TINY, normalize=True)


def tiny_backbone():
    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(16, 16, 16), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8), conv_bias=False,
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    return HubertModel(cfg)


def clips(n, seed):
    spk = voice.random_speaker("s", "F", np.random.default_rng(seed))
    waves, labels = [], []
    for i in range(n):
        emo = CLASSES[i % 2]
        waves.append(voice.utterance(spk, emo, 0.8, np.random.default_rng([seed, i])))
        labels.append(emo)
    return waves, labels


def test_finetune_trains_transformer_not_conv_and_selects_on_validation():
    backbone = tiny_backbone()
    conv_before = {k: v.clone() for k, v in backbone.feature_extractor.state_dict().items()}
    enc_before = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    tw, ty = clips(12, 1)
    vw, vy = clips(6, 2)
    seen = []
    res = finetune(backbone, tw, ty, vw, vy, CLASSES,
                   FinetuneConfig(epochs=3, batch_size=4, lr=1e-3, patience=6, augment=True, seed=0),
                   progress=lambda epoch, rec: seen.append(epoch), entry=TINY)
    assert seen == [1, 2, 3] and len(res.history) == 3
    after = res.backbone.feature_extractor.state_dict()
    assert all(torch.equal(conv_before[k], after[k]) for k in conv_before)        # frozen
    enc_after = res.backbone.encoder.state_dict()
    assert any(not torch.equal(enc_before[k], enc_after[k]) for k in enc_before)  # trained
    best = max(res.history, key=lambda r: (r["val_ua"], -r["val_loss"]))
    assert res.best_epoch == best["epoch"] and res.best_val_ua == best["val_ua"]
    # the first step is in warm-up: the learning rate rises from 0, then decays (cosine)
    assert res.history[0]["lr"] > 0 and res.history[-1]["lr"] < 1e-3
    feats = pooled_layers(stacked(res.backbone, False), {"name": "waveform"}, tw[0])
    assert feats.shape == (3, 32)


def test_finetune_is_seeded():
    tw, ty = clips(8, 1)
    vw, vy = clips(4, 2)
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-3, seed=3)
    a = finetune(tiny_backbone(), tw, ty, vw, vy, CLASSES, cfg, entry=TINY)
    b = finetune(tiny_backbone(), tw, ty, vw, vy, CLASSES, cfg, entry=TINY)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


def test_finetune_feeds_the_backbone_normalised_input_when_the_entry_says_so():
    """With ``normalize=True`` every backbone call, in training and in validation, sees each clip
    zero-mean/unit-variance, as in every exported artefact (``backbones.stacked``)."""
    tw, ty = clips(4, 1)
    vw, vy = clips(2, 2)
    tw, vw = [3.0 * w + 0.1 for w in tw], [3.0 * w + 0.1 for w in vw]  # clearly not normalised
    backbone = tiny_backbone()
    seen = []
    backbone.register_forward_pre_hook(lambda mod, args: seen.append((mod.training, args[0].detach().clone())))
    finetune(backbone, tw, ty, vw, vy, CLASSES, FinetuneConfig(epochs=1, batch_size=2, augment=False, seed=0),
             entry=NORMALISED)
    assert {training for training, _ in seen} == {True, False} and len(seen) == 6
    for _, x in seen:
        assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1.0) < 1e-3


def test_finetune_with_normalize_is_invariant_to_input_scale():
    tw, ty = clips(4, 1)
    vw, vy = clips(2, 2)
    cfg = FinetuneConfig(epochs=2, batch_size=2, augment=False, seed=0)
    a = finetune(tiny_backbone(), tw, ty, vw, vy, CLASSES, cfg, entry=NORMALISED)
    b = finetune(tiny_backbone(), [4.0 * w for w in tw], ty, [4.0 * w for w in vw], vy, CLASSES, cfg, entry=NORMALISED)
    for ra, rb in zip(a.history, b.history):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-4)
