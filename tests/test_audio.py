"""The preprocessing and augmentation steps do exactly what the reference paper says."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from serbench import audio

SR = 16_000


def tone(seconds, freq=220.0, amp=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_defaults_are_the_papers():
    p = audio.Preprocess()
    assert (p.trim_db, p.preemphasis, p.peak, p.seconds, p.length) == (20.0, 0.97, 0.95, 8.0, 128_000)


def test_trim_removes_edges_quieter_than_20db():
    quiet = np.full(SR, 0.001, np.float32)          # -54 dB relative to the tone
    y, n_valid = audio.Preprocess(preemphasis=None, peak=None, seconds=None)(
        np.concatenate([quiet, tone(0.5), quiet]))
    assert n_valid == len(y)
    assert abs(n_valid - 0.5 * SR) < 2048 + 512     # within one analysis frame of the tone
    kept = audio.Preprocess(trim_db=60, preemphasis=None, peak=None, seconds=None)(
        np.concatenate([quiet, tone(0.5), quiet]))[1]
    assert kept > 2 * SR                             # a 60 dB threshold keeps the -54 dB edges


def test_preemphasis_is_first_order_difference():
    x = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)
    y, _ = audio.Preprocess(trim_db=None, peak=None, seconds=None)(x)
    expected = np.concatenate([[x[0]], x[1:] - 0.97 * x[:-1]])
    np.testing.assert_allclose(y, expected, atol=1e-6)
    # it is a high-pass: 4 kHz gains over 100 Hz
    _, h = scipy.signal.freqz([1, -0.97], [1], worN=[100, 4000], fs=SR)
    assert abs(h[1]) > 10 * abs(h[0])


@pytest.mark.parametrize("seconds", [0.7, 3.0, 11.0])
def test_peak_and_fixed_length(seconds):
    rng = np.random.default_rng(1)
    x = tone(seconds, amp=0.2) + rng.normal(0, 0.01, int(seconds * SR)).astype(np.float32)
    y, n_valid = audio.Preprocess()(x)
    assert y.shape == (128_000,) and y.dtype == np.float32
    assert float(np.max(np.abs(y))) == pytest.approx(0.95, abs=1e-6)
    assert n_valid == min(int(seconds * SR), 128_000) or seconds < 8  # trimmed clips may be shorter
    assert not y[n_valid:].any()                     # padding is exact zeros
    if seconds > 8:
        assert n_valid == 128_000


def test_silence_does_not_crash_or_divide_by_zero():
    y, n_valid = audio.Preprocess()(np.zeros(SR, np.float32))
    assert y.shape == (128_000,) and not np.isnan(y).any()


def test_resample_keeps_frequency():
    y = audio.resample(tone(1.0, freq=1000.0, sr=44_100), 44_100, SR)
    assert len(y) == SR
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) - 1000) <= 1


def test_augment_is_seeded_and_each_step_does_its_job():
    x = tone(1.0, freq=440.0, amp=0.5)
    on = dict(p_gain=0.0, p_noise=0.0, p_pitch=0.0, p_invert=0.0)
    a = audio.Augment()
    assert np.array_equal(a(x, np.random.default_rng(3)), a(x, np.random.default_rng(3)))
    inv = audio.Augment(**{**on, "p_invert": 1.0})(x, np.random.default_rng(0))
    np.testing.assert_array_equal(inv, -x)
    gains = [np.max(np.abs(audio.Augment(**{**on, "p_gain": 1.0})(x, np.random.default_rng(s)))) / 0.5
             for s in range(30)]
    db = 20 * np.log10(gains)
    assert db.min() >= -18 - 1e-6 and db.max() <= 6 + 1e-6 and db.max() - db.min() > 6
    noisy = audio.Augment(**{**on, "p_noise": 1.0})(x, np.random.default_rng(0))
    assert 0.001 * 0.8 < np.std(noisy - x) < 0.015 * 1.2
    shifted = audio.Augment(**{**on, "p_pitch": 1.0})(x, np.random.default_rng(0))
    semis = np.random.default_rng(0)
    semis.random()
    expected = 440 * 2 ** (semis.uniform(-2, 2) / 12)
    peak = np.argmax(np.abs(np.fft.rfft(shifted))) * SR / len(shifted)
    assert abs(peak - expected) < 3 and abs(peak - 440) > 1
