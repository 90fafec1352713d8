"""A small source-filter voice: speech-like audio whose emotion lives in its prosody.

Why: there is no real IEMOCAP or CREMA-D audio on the build machines, yet the whole pipeline
(recipes, splits, embeddings, training, leakage audit) must run end to end and show real effects.
So each utterance is a glottal pulse train (Rosenberg pulses, with jitter and shimmer) through
vowel formant resonators (Klatt's), in syllable rhythm with fricative bursts and pauses.

* Emotion is prosody: F0 level, range and contour, tempo, energy and stress, spectral tilt,
  jitter/shimmer, breathiness and a "smile" formant shift; both arousal (angry/happy vs
  sad/neutral) and valence (angry vs happy: harsh, falling, tense vs smooth, rising) show.
* Speakers differ in F0 baseline, vocal-tract length and voice quality, and each renders every
  emotion a little in its own way (``Speaker.style``), so a classifier that has seen a speaker
  does better than on an unseen one: random k-fold beats speaker-independent splits.
* Channels (:class:`Channel`: EQ, noise, room) differ per session and per corpus, and an
  ``exaggeration`` factor makes a theatrical corpus, so cross-corpus shift is real too.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.signal

SR = 16_000

# Vowel formants F1..F4 (Hz) of an adult male voice (Peterson & Barney style).
VOWELS = np.array([
    [730, 1090, 2440, 3400],  # a
    [530, 1840, 2480, 3400],  # e
    [270, 2290, 3010, 3500],  # i
    [570, 840, 2410, 3300],   # o
    [300, 870, 2240, 3300],   # u
], dtype=float)
BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])


@dataclass(frozen=True)
class Prosody:
    """How an emotion is spoken; each field is a deviation-able knob of the voice."""

    f0: float = 1.0            # F0 level, times the speaker's baseline
    f0_range: float = 2.0      # excursion of the F0 contour, semitones
    contour: float = -0.3      # overall slope of F0 over the utterance (-1 falling .. +1 rising)
    tempo: float = 1.0         # syllable rate, times the speaker's
    energy_db: float = 0.0     # level
    stress: float = 0.3        # loudness contrast between stressed and other syllables
    tilt: float = 0.6          # one-pole low-pass on the source: 0 bright/tense .. 0.9 dark/lax
    jitter: float = 0.005      # relative cycle-to-cycle F0 perturbation
    shimmer: float = 0.03      # relative cycle-to-cycle amplitude perturbation
    breath: float = 0.05       # aspiration noise relative to voicing
    formant: float = 1.0       # formant scale (a smile raises formants)
    pause: float = 0.15        # probability of a pause between words

    def blend(self, other: "Prosody", k: float) -> "Prosody":
        """``self + k * (other - self)``, knob by knob."""
        return Prosody(**{
            name: getattr(self, name) + k * (getattr(other, name) - getattr(self, name))
            for name in self.__dataclass_fields__
        })


NEUTRAL = Prosody()
# Raw emotion names used by the synthetic corpora, rendered as deviations from neutral.
EMOTIONS: dict[str, Prosody] = {
    "neutral": NEUTRAL,
    "calm": Prosody(f0=0.95, f0_range=1.5, tempo=0.85, energy_db=-3, stress=0.2, tilt=0.7,
                    jitter=0.004, breath=0.1),
    "happy": Prosody(f0=1.3, f0_range=7.0, contour=0.6, tempo=1.15, energy_db=4, stress=0.5,
                     tilt=0.45, jitter=0.006, shimmer=0.03, breath=0.03, formant=1.07),
    "excited": Prosody(f0=1.4, f0_range=8.0, contour=0.7, tempo=1.25, energy_db=6, stress=0.6,
                       tilt=0.4, jitter=0.008, shimmer=0.04, breath=0.03, formant=1.08),
    "angry": Prosody(f0=1.2, f0_range=5.0, contour=-0.9, tempo=1.2, energy_db=8, stress=0.9,
                     tilt=0.15, jitter=0.03, shimmer=0.15, breath=0.0, formant=0.97, pause=0.05),
    "frustrated": Prosody(f0=1.1, f0_range=3.5, contour=-0.6, tempo=1.05, energy_db=3, stress=0.6,
                          tilt=0.35, jitter=0.02, shimmer=0.1, breath=0.05),
    "sad": Prosody(f0=0.85, f0_range=1.0, contour=-0.6, tempo=0.7, energy_db=-7, stress=0.1,
                   tilt=0.85, jitter=0.015, shimmer=0.06, breath=0.25, formant=0.98, pause=0.35),
    "fearful": Prosody(f0=1.45, f0_range=4.0, contour=0.2, tempo=1.3, energy_db=1, stress=0.4,
                       tilt=0.5, jitter=0.04, shimmer=0.08, breath=0.2),
    "disgust": Prosody(f0=0.9, f0_range=3.0, contour=-0.4, tempo=0.8, energy_db=0, stress=0.5,
                       tilt=0.6, jitter=0.02, shimmer=0.08, breath=0.1, formant=0.96),
    "surprised": Prosody(f0=1.5, f0_range=9.0, contour=1.0, tempo=1.1, energy_db=4, stress=0.5,
                         tilt=0.4, jitter=0.008, formant=1.03),
    "bored": Prosody(f0=0.9, f0_range=0.8, contour=-0.2, tempo=0.75, energy_db=-5, stress=0.05,
                     tilt=0.8, jitter=0.008, breath=0.15),
}


@dataclass(frozen=True)
class Speaker:
    """A voice: baseline F0, vocal-tract length factor, voice quality and per-emotion style."""

    name: str
    gender: str
    f0: float
    vtl: float                       # formant scale: shorter tract -> higher formants
    rate: float = 4.5                # syllables per second at tempo 1
    quality: Prosody = NEUTRAL       # the speaker's own neutral voice
    style: dict = field(default_factory=dict)  # emotion -> (strength, Prosody offset)

    def prosody(self, emotion: str, intensity: float = 1.0) -> Prosody:
        """This speaker's rendering of ``emotion`` at ``intensity`` (1 normal, >1 stronger)."""
        base = EMOTIONS[emotion]
        strength, offset = self.style.get(emotion, (1.0, None))
        p = self.quality.blend(_shift(self.quality, base), strength * intensity)
        return _add(p, offset) if offset is not None else p


def _shift(quality: Prosody, emo: Prosody) -> Prosody:
    """Apply an emotion's deviation from NEUTRAL on top of a speaker's own neutral voice."""
    out = {}
    for name in Prosody.__dataclass_fields__:
        q, e, n = getattr(quality, name), getattr(emo, name), getattr(NEUTRAL, name)
        out[name] = q * (e / n) if name in ("f0", "tempo", "formant") else q + (e - n)
    return Prosody(**out)


def _add(p: Prosody, offset: Prosody) -> Prosody:
    return Prosody(**{n: getattr(p, n) + getattr(offset, n) for n in Prosody.__dataclass_fields__})


def _zero() -> Prosody:
    return Prosody(**{n: 0.0 for n in Prosody.__dataclass_fields__})


def random_speaker(name: str, gender: str, rng: np.random.Generator, idiosyncrasy: float = 1.8) -> Speaker:
    """Draw a speaker; ``idiosyncrasy`` scales how personally each emotion is rendered."""
    male = gender == "M"
    quality = replace(
        NEUTRAL,
        f0_range=float(rng.uniform(1.5, 3.0)),
        tilt=float(np.clip(rng.normal(0.6, 0.08), 0.35, 0.8)),
        jitter=float(rng.uniform(0.003, 0.01)),
        breath=float(rng.uniform(0.02, 0.12) + (0.04 if not male else 0.0)),
        stress=float(rng.uniform(0.2, 0.4)),
    )
    style = {}
    for emo in EMOTIONS:
        if emo == "neutral":
            continue
        offset = replace(
            _zero(),
            f0=float(rng.normal(0, 0.06)), f0_range=float(rng.normal(0, 1.0)),
            contour=float(rng.normal(0, 0.3)), tempo=float(rng.normal(0, 0.07)),
            energy_db=float(rng.normal(0, 1.5)), tilt=float(rng.normal(0, 0.06)),
            jitter=float(rng.normal(0, 0.004)), breath=float(rng.normal(0, 0.03)),
        )
        offset = Prosody(**{n: idiosyncrasy * getattr(offset, n) for n in Prosody.__dataclass_fields__})
        style[emo] = (float(rng.uniform(1.0 - 0.35 * idiosyncrasy, 1.0 + 0.25 * idiosyncrasy)), offset)
    return Speaker(
        name=name, gender=gender,
        f0=float(rng.uniform(95, 140) if male else rng.uniform(175, 240)),
        vtl=float(rng.uniform(0.93, 1.03) if male else rng.uniform(1.08, 1.2)),
        rate=float(rng.uniform(3.8, 5.2)), quality=quality, style=style,
    )


@dataclass(frozen=True)
class Channel:
    """Recording conditions: a peaking EQ, a low-pass band limit, a room and a noise floor."""

    eq_hz: float = 1000.0
    eq_db: float = 0.0
    lowpass_hz: float = 7600.0
    snr_db: float = 35.0
    room: float = 0.0           # reverb tail strength (0 = dry)

    @staticmethod
    def random(rng: np.random.Generator, snr_db: tuple[float, float], room: float = 0.1) -> "Channel":
        return Channel(
            eq_hz=float(rng.uniform(300, 3000)), eq_db=float(rng.uniform(-6, 6)),
            lowpass_hz=float(rng.uniform(3800, 7600)), snr_db=float(rng.uniform(*snr_db)),
            room=float(rng.uniform(0, room)),
        )

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
        if self.eq_db:
            b, a = _peaking(self.eq_hz, self.eq_db, 1.0, sr)
            y = scipy.signal.lfilter(b, a, y)
        if self.lowpass_hz < sr / 2 - 100:
            y = scipy.signal.sosfilt(scipy.signal.butter(4, self.lowpass_hz, fs=sr, output="sos"), y)
        if self.room > 0:
            n = int(0.25 * sr)
            ir = rng.normal(0, 1, n) * np.exp(-np.arange(n) / (0.05 * sr))
            ir = self.room * ir / np.sqrt(np.sum(ir ** 2))
            ir[0] = 1.0
            y = scipy.signal.fftconvolve(y, ir)[: y.size]
        speech_rms = np.sqrt(np.mean(y ** 2)) + 1e-12
        return y + rng.normal(0, speech_rms * 10 ** (-self.snr_db / 20), y.size)


def _peaking(f0: float, gain_db: float, q: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking filter."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / sr
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def _formant_sos(formants: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of Klatt resonators (unity gain at DC) as second-order sections."""
    rows = []
    for f, bw in zip(formants, BANDWIDTHS):
        f = min(f, 0.45 * sr)
        c = -np.exp(-2 * np.pi * bw / sr)
        b = 2 * np.exp(-np.pi * bw / sr) * np.cos(2 * np.pi * f / sr)
        rows.append([1 - b - c, 0.0, 0.0, 1.0, -b, -c])
    return np.array(rows)


def render(speaker: Speaker, prosody: Prosody, seconds: float, rng: np.random.Generator,
           sr: int = SR) -> np.ndarray:
    """About ``seconds`` of speech by ``speaker`` with ``prosody``; float64, peak ~0.5 * level."""
    n = max(int(seconds * sr), sr // 4)
    t = np.arange(n) / sr
    # --- syllable plan: (start, consonant length, vowel length, vowel, stressed) ---
    rate = speaker.rate * max(prosody.tempo, 0.3)
    vowel_w = np.zeros((len(VOWELS), n))
    voiced = np.zeros(n)
    fric = np.zeros(n)
    pos = 0
    while pos < n - int(0.08 * sr):
        syl = int(sr / rate * rng.uniform(0.7, 1.3))
        cons = int(syl * rng.uniform(0.15, 0.35)) if rng.random() < 0.65 else 0
        vow = max(syl - cons, int(0.04 * sr))
        end = min(pos + cons + vow, n)
        if cons:
            fric[pos:pos + cons] = np.hanning(cons)[: max(0, min(cons, n - pos))]
        v0 = pos + cons
        if v0 < end:
            stressed = rng.random() < 0.35
            env = np.sin(np.linspace(0, np.pi, end - v0)) ** 0.6
            voiced[v0:end] = env * (1 + prosody.stress * (1.5 if stressed else -0.3))
            vowel_w[rng.integers(len(VOWELS)), v0:end] = 1.0
        pos = end
        if rng.random() < prosody.pause / 3:
            pos += int(sr * rng.uniform(0.08, 0.25) / max(prosody.tempo, 0.3))
    # smooth vowel transitions (~25 ms) so formants glide rather than click
    win = np.hanning(int(0.025 * sr))
    vowel_w = scipy.signal.fftconvolve(vowel_w, win[None, :] / win.sum(), mode="same", axes=1)
    # --- F0 contour with declination, undulation, jitter ---
    x = t / t[-1] - 0.5
    semis = prosody.f0_range * (prosody.contour * x + 0.5 * np.sin(2 * np.pi * rng.uniform(0.6, 1.6) * t
                                                                 + rng.uniform(0, 2 * np.pi)))
    f0 = speaker.f0 * prosody.f0 * 2 ** (semis / 12)
    hold = int(0.005 * sr)
    jit = np.repeat(rng.normal(0, 1, n // hold + 1), hold)[:n]
    f0 = np.clip(f0 * (1 + max(prosody.jitter, 0) * jit), 50, 0.4 * sr)
    phase = np.cumsum(f0 / sr)
    cycle = phase.astype(int)
    p = phase - cycle
    flow = np.where(p < 0.5, 0.5 * (1 - np.cos(2 * np.pi * p)),
                    np.where(p < 0.8, np.cos(np.pi * (p - 0.5) / 0.6), 0.0))
    flow *= 1 + max(prosody.shimmer, 0) * rng.normal(0, 1, cycle[-1] + 1)[cycle]
    src = np.diff(flow, prepend=0.0)
    tilt = float(np.clip(prosody.tilt, 0.0, 0.95))
    src = scipy.signal.lfilter([1 - tilt], [1, -tilt], src)
    src = src / (np.std(src) + 1e-12)
    src = src + max(prosody.breath, 0) * rng.normal(0, 1, n)
    src *= voiced
    # --- vocal tract: each vowel's resonator cascade, mixed by the vowel weights ---
    speech = np.zeros(n)
    scale = speaker.vtl * prosody.formant
    for v in range(len(VOWELS)):
        if vowel_w[v].any():
            speech += vowel_w[v] * scipy.signal.sosfilt(_formant_sos(VOWELS[v] * scale, sr), src)
    hp = scipy.signal.butter(2, min(2500 * scale, 0.45 * sr), btype="high", fs=sr, output="sos")
    noise = scipy.signal.sosfilt(hp, rng.normal(0, 1, n)) * fric
    speech = speech / (np.std(speech[voiced > 0]) + 1e-12) + 0.25 * noise
    level = 10 ** ((prosody.energy_db - 14) / 20)
    return level * speech / (np.max(np.abs(speech)) + 1e-12) * 2.0


def utterance(speaker: Speaker, emotion: str, seconds: float, rng: np.random.Generator,
              channel: Channel | None = None, intensity: float = 1.0, sr: int = SR,
              lead: tuple[float, float] = (0.1, 0.6)) -> np.ndarray:
    """A recorded utterance: speech with leading/trailing silence, through ``channel``; float32."""
    prosody = speaker.prosody(emotion, intensity)
    # per-utterance variation, so no two utterances of one speaker and emotion are alike
    prosody = replace(prosody, f0=prosody.f0 * rng.uniform(0.92, 1.08),
                      f0_range=prosody.f0_range * rng.uniform(0.75, 1.25),
                      tempo=prosody.tempo * rng.uniform(0.88, 1.12),
                      energy_db=prosody.energy_db + rng.normal(0, 2.5))
    speech = render(speaker, prosody, seconds, rng, sr)
    pad = [np.zeros(int(rng.uniform(*lead) * sr)) for _ in range(2)]
    y = np.concatenate([pad[0], speech, pad[1]])
    y = (channel or Channel()).apply(y, rng, sr)
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


def probe_clips(n: int, seed: int = 0, seconds: float = 8.0, sr: int = SR) -> list[np.ndarray]:
    """``n`` fixed speech-like clips of about ``seconds`` each, for fidelity probes and calibration.

    Deterministic in ``seed``: the same clips every time, mixed speakers and emotions.
    """
    rng = np.random.default_rng([seed, 7919])
    emotions = sorted(EMOTIONS)
    clips = []
    for i in range(n):
        spk = random_speaker(f"probe{i}", "MF"[i % 2], rng)
        emo = emotions[int(rng.integers(len(emotions)))]
        clip = utterance(spk, emo, seconds - 0.4, rng, Channel.random(rng, (20, 35)), sr=sr,
                         lead=(0.1, 0.2))
        clips.append(clip[: int(seconds * sr)])
    return clips
