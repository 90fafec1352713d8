"""The embedding cache: reused when nothing changed, recomputed when anything that matters did."""
from __future__ import annotations

import shutil

import numpy as np

from serbench import audio
from serbench.embed import embed_files


class CountingEncoder:
    """A transparent encoder (frame energies as 'layers') that counts its calls."""

    def __init__(self):
        self.calls = 0

    def embed(self, wave):
        self.calls += 1
        frames = wave[: len(wave) // 400 * 400].reshape(-1, 400)
        return np.stack([frames.mean(0), np.abs(frames).mean(0)])


def test_cache_hits_and_invalidation(synthetic, tmp_path):
    files = sorted(str(p) for p in (synthetic["emodb"] / "wav").glob("*.wav"))[:6]
    enc = CountingEncoder()
    X, stats = embed_files(files, enc, "counting", progress=False)
    assert X.shape == (6, 2, 400) and enc.calls == 6 and stats["computed"] == 6
    X2, stats = embed_files(files, enc, "counting", progress=False)
    assert enc.calls == 6 and stats["cache_hits"] == 6
    np.testing.assert_array_equal(X, X2)
    # another encoder key or other preprocessing: recomputed, not served stale
    embed_files(files, enc, "counting-v2", progress=False)
    assert enc.calls == 12
    embed_files(files, enc, "counting", preprocess=audio.Preprocess(trim_db=30), progress=False)
    assert enc.calls == 18
    # a changed file is recomputed even at the same path; an unchanged copy elsewhere is a hit
    copy = tmp_path / "copy.wav"
    shutil.copy(files[0], copy)
    embed_files([str(copy)], enc, "counting", progress=False)
    assert enc.calls == 18
    y = audio.load(copy)
    import soundfile as sf
    sf.write(copy, y[::-1].copy(), 16_000)
    Xr, _ = embed_files([str(copy)], enc, "counting", progress=False)
    assert enc.calls == 19 and not np.array_equal(Xr[0], X[0])


def test_embedding_sees_speech_only_not_padding(synthetic):
    files = sorted(str(p) for p in (synthetic["emodb"] / "wav").glob("*.wav"))[:1]
    seen = []

    class Recorder(CountingEncoder):
        def embed(self, wave):
            seen.append(len(wave))
            return super().embed(wave)

    embed_files(files, Recorder(), "recorder", progress=False)
    y, n_valid = audio.Preprocess()(audio.load(files[0]))
    assert seen == [n_valid] and n_valid < 128_000


def test_single_threaded_encoders_embed_in_parallel_with_the_same_result(synthetic, tmp_path, monkeypatch):
    import threading

    from serbench import backbones, embed, registry

    files = sorted(str(p) for p in (synthetic["emodb"] / "wav").glob("*.wav"))[:8]
    entry = registry.load_model("egemaps")
    pre = audio.Preprocess(**entry.input)
    seen = set()

    class Spy(backbones.OpenSmileEncoder):
        def embed(self, wave):
            seen.add(threading.get_ident())
            return super().embed(wave)

    monkeypatch.setattr(embed, "workers_for", lambda enc: 3)
    X, _ = embed_files(files, Spy(entry), "spy", preprocess=pre, cache_root=tmp_path / "a", progress=False)
    assert len(seen) > 1                                       # really ran on several threads
    monkeypatch.setattr(embed, "workers_for", lambda enc: 1)
    Y, _ = embed_files(files, backbones.OpenSmileEncoder(entry), "seq", preprocess=pre,
                       cache_root=tmp_path / "b", progress=False)
    np.testing.assert_array_equal(X, Y)
    assert embed.workers_for(CountingEncoder()) == 1           # no `threads`: not assumed single-threaded
