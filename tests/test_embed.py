"""The embedding cache: reused when nothing changed, recomputed when anything that matters did."""
from __future__ import annotations

import shutil

import numpy as np

from serbench import audio, embed
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
    _, n_valid = audio.Preprocess()(audio.load(files[0]))
    assert seen == [n_valid] and n_valid < 128_000


def test_single_threaded_encoders_embed_in_parallel_with_the_same_result(synthetic, tmp_path, monkeypatch):
    import threading

    from serbench import backbones, registry

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


# -- the prefetch pipeline -----------------------------------------------------------------------


def _pipeline_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith(embed.THREAD_PREFIX)]


def _emodb(synthetic, n: int) -> list[str]:
    return sorted(str(p) for p in (synthetic["emodb"] / "wav").glob("*.wav"))[:n]


def test_prefetch_gives_the_serial_embeddings_bit_for_bit_in_order(synthetic, tmp_path):
    """tiny HuBERT (embedded on the calling thread) and eGeMAPS (one clip per worker in the pool)."""
    from serbench import backbones, registry

    files = _emodb(synthetic, 10)
    files = files[5:] + files[:5]                       # not sorted: the order is the caller's
    for model in ("tiny", "egemaps"):
        entry = registry.load_model(model)
        net, _ = backbones.build(entry, "random:0" if model == "tiny" else "hub")
        enc = backbones.encoder(entry, net)
        pre = audio.Preprocess(**entry.input)
        X, stats = embed_files(files, enc, model, pre, cache_root=tmp_path / f"{model}-pipe", progress=False,
                               prefetch=2)
        Y, _ = embed_files(files, enc, model, pre, cache_root=tmp_path / f"{model}-serial", progress=False,
                           prefetch=0)
        assert stats["computed"] == len(files) and X.dtype == np.float32
        assert X.tobytes() == Y.tobytes()
        first = np.asarray(enc.embed(embed.speech_segment(files[0], pre)), np.float32)
        assert np.array_equal(X[0], first)              # row 0 is the caller's first file
        assert not _pipeline_threads()


def test_an_unreadable_clip_in_the_middle_fails_as_on_the_serial_path(synthetic, tmp_path):
    import pytest

    from serbench.audio import AudioError

    good = _emodb(synthetic, 6)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    files = good[:3] + [str(bad)] + good[3:]
    seen = {}
    for prefetch in (0, 3):
        enc = CountingEncoder()
        cache = tmp_path / f"cache-{prefetch}"
        with pytest.raises(AudioError) as err:
            embed_files(files, enc, "counting", cache_root=cache, progress=False, prefetch=prefetch)
        seen[prefetch] = (str(err.value), enc.calls)
        assert str(bad) in str(err.value)
        assert not _pipeline_threads()
        # the clips before it were embedded and cached, none after it
        _, stats = embed_files(good[:3], enc, "counting", cache_root=cache, progress=False)
        assert stats["cache_hits"] == 3
        _, stats = embed_files(good[3:], enc, "counting", cache_root=cache, progress=False)
        assert stats["cache_hits"] == 0
        assert not list(cache.rglob("*.tmp"))
    assert seen[0] == seen[3] and seen[0][1] == 3


def test_an_encoder_failure_names_the_file_and_stops_the_threads(synthetic, tmp_path):
    import pytest

    files = _emodb(synthetic, 6)

    class Fails(CountingEncoder):
        def embed(self, wave):
            if self.calls == 2:
                raise RuntimeError("encoder fell over")
            return super().embed(wave)

    with pytest.raises(RuntimeError, match="encoder fell over") as err:
        embed_files(files, Fails(), "fails", cache_root=tmp_path, progress=False, prefetch=2)
    assert f"while embedding {files[2]}" in getattr(err.value, "__notes__", [])
    assert not _pipeline_threads()


def test_prefetch_stays_within_its_bound_and_the_progress_bar_counts(synthetic, tmp_path, monkeypatch):
    import threading
    import time

    files = _emodb(synthetic, 12)
    prefetch, workers = 2, 1                            # CountingEncoder has no `threads`: one worker
    lock = threading.Lock()
    decoded = set()                                     # a clip the consumer found unfinished is decoded twice
    ahead = []
    real_segment = embed.speech_segment

    def counting_segment(path, pre):
        wave = real_segment(path, pre)
        with lock:
            decoded.add(path)
        return wave

    class Slow(CountingEncoder):
        def embed(self, wave):
            time.sleep(0.05)                           # decoding a tiny clip takes a few ms
            with lock:
                ahead.append(len(decoded) - self.calls - 1)   # decoded but not yet embedded
            return super().embed(wave)

    counts = []

    class Bar:
        def __init__(self, total, **kwargs):
            self.total, self.n = total, 0
            counts.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.n += n

    monkeypatch.setattr(embed, "speech_segment", counting_segment)
    monkeypatch.setattr(embed, "tqdm", Bar)
    enc = Slow()
    X, _ = embed_files(files, enc, "slow", cache_root=tmp_path, progress=True, prefetch=prefetch)
    assert enc.calls == len(files) and X.shape[0] == len(files)
    assert max(ahead) <= prefetch + workers             # bounded memory
    assert max(ahead) >= prefetch                       # and it really decodes ahead of the encoder
    assert [(b.total, b.n) for b in counts] == [(len(files), len(files))]
    assert not _pipeline_threads()


def test_the_encoder_never_waits_for_a_starved_decode_thread(synthetic, tmp_path, monkeypatch):
    """Decoding ahead runs at low priority, so on a busy machine it may fall behind: the consumer
    then decodes each clip itself, and the result is still the serial path's."""
    import os
    import sys
    import threading

    files = _emodb(synthetic, 6)
    real_segment = embed.speech_segment
    done = threading.Event()
    by = {"consumer": 0, "background": 0}
    nice = set()

    def starved_segment(path, pre):
        if threading.current_thread().name.startswith(embed.THREAD_PREFIX):
            nice.add(os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None)
            done.wait(timeout=30)                      # never gets the CPU while the encoder runs
            by["background"] += 1
        else:
            by["consumer"] += 1
        return real_segment(path, pre)

    class Last(CountingEncoder):
        def embed(self, wave):
            out = super().embed(wave)
            if self.calls == len(files):
                done.set()
            return out

    before = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
    monkeypatch.setattr(embed, "speech_segment", starved_segment)
    X, stats = embed_files(files, Last(), "last", cache_root=tmp_path / "pipe", progress=False, prefetch=2)
    monkeypatch.setattr(embed, "speech_segment", real_segment)
    Y, _ = embed_files(files, CountingEncoder(), "last", cache_root=tmp_path / "serial", progress=False, prefetch=0)
    assert X.tobytes() == Y.tobytes() and stats["computed"] == len(files)
    assert by["consumer"] == len(files)                # none of them waited for the background
    assert not _pipeline_threads()
    if sys.platform.startswith("linux"):                # per-thread nice values: the decode thread's only
        assert nice == {19} and os.getpriority(os.PRIO_PROCESS, 0) == before   # this thread unchanged


def test_prime_puts_embeddings_made_elsewhere_into_this_cache_so_nothing_is_recomputed(synthetic, tmp_path):
    """What a sweep's fold task does on a node whose cache lacks the embed tasks' results."""
    from serbench import paths

    files = sorted(str(p) for p in (synthetic["emodb"] / "wav").glob("*.wav"))[:5]
    with paths.using_home(tmp_path / "node-a"):
        X, _ = embed_files(files, CountingEncoder(), "counting", progress=False)
    with paths.using_home(tmp_path / "node-b"):
        assert embed.prime(files[:3], X[:3], "counting", audio.Preprocess()) == 3
        assert embed.prime(files[:3], X[:3], "counting", audio.Preprocess()) == 0   # already there
        enc = CountingEncoder()
        Xb, stats = embed_files(files, enc, "counting", progress=False)
    assert stats["cache_hits"] == 3 and enc.calls == 2
    np.testing.assert_array_equal(Xb, X)


def test_a_fully_cached_set_says_cached_once_and_draws_no_empty_bar(synthetic, capsys):
    import io

    from serbench import progress

    files = sorted(str(p) for p in (synthetic["emodb"] / "wav").glob("*.wav"))[:3]
    embed_files(files, CountingEncoder(), "bars", desc="fold 0 embed train", progress=True)
    first = capsys.readouterr().err
    assert "fold 0 embed train" in first   # a bar while work is done
    out = io.StringIO()
    with progress.shown(stream=out):
        embed_files(files, CountingEncoder(), "bars", desc="fold 0 embed train", progress=True)
    assert out.getvalue() == "fold 0 embed train: all 3 cached\n"
    assert capsys.readouterr().err == ""   # no bar of 0 utterances
