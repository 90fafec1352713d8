"""The front door: serbench from Python, plain data out.

    import serbench
    df = serbench.run(model="egemaps", protocol="speaker-kfold", synthetic=True, home="/tmp/x")
    df[["recipe", "ua", "ua_ci_low", "ua_ci_high"]]
    serbench.results(home="/tmp/x")                     # every finished run in the store
    rep = serbench.compare(home="/tmp/x", out="/tmp/x/report")      # rep.runs, rep.paired, ...
    card = serbench.export(df.run_id[0], "/tmp/x/model", home="/tmp/x")
    serbench.analyse("/tmp/x/model", ["note.ogg"])     # one row per file

Each function that touches serbench's own files takes ``home=`` (the SERBENCH_HOME of this call:
caches, artefacts, synthetic corpora, the default store) and ``store=`` (the results database)
instead of environment variables, and returns a pandas DataFrame (``compare``: the report's
tables; ``export``: the model card). ``analyse`` reads only an exported model folder, so it takes
neither. The command line calls these (or, for ``serbench infer``, the runtime function that
``analyse`` wraps, which a model folder also runs without serbench) and only formats what they
return.

Every function checks its arguments first, against its table in :mod:`serbench.options` (the
one declaration of each option's type and range): a wrong type, an unknown keyword or a value out
of range is a :class:`~serbench.errors.SerbenchError` with the command line's message, before any
work is done.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from serbench import options as opts
from serbench import paths
from serbench import progress as progress_mod

RUN_COLUMNS = ("run_id", "model", "recipe", "protocol", "mode", "head", "label_maps",
               "ua", "ua_ci_low", "ua_ci_high", "ua_fold_mean", "ua_fold_std",
               "wa", "wa_ci_low", "wa_ci_high", "macro_f1", "macro_f1_ci_low", "macro_f1_ci_high",
               "size_mb", "latency_p50_ms", "delta_ua", "delta_ua_ci_low", "delta_ua_ci_high",
               "delta_ua_p", "delta_ua_mdd", "mcnemar_p", "agreement", "verdict", "speakers",
               "shared_speakers_train_test", "weights", "synthetic", "flags", "skipped_files")


def run(model: str, protocol: str, recipes=("fp32",), *, home: str | Path | None = None,
        store: str | Path | None = None, resume: bool = False, progress: bool | None = None, log=None,
        **options) -> pd.DataFrame:
    """``serbench run``: one row per recipe (see :data:`RUN_COLUMNS`).

    ``progress``: bars for embedding and a line every few seconds for long silent steps (builds,
    timing) on stderr; None (default) shows them when stderr is a terminal.

    ``options`` are the fields of :class:`serbench.runner.RunSpec` (``mode``, ``weights``,
    ``corpus``, ``label_maps``, ``head``, ``data``, ``synthetic``, ``synthetic_size``, ``seed``,
    ``measure``, ``n_resamples``, ``finetune`` ...; ``epochs``: ``finetune``'s epochs, as
    ``--epochs``), checked first (:data:`serbench.options.RUN`). UA, WA and macro-F1 are pooled over all
    folds with their 95 % speaker-bootstrap interval; ``ua_fold_mean``/``ua_fold_std`` are the
    per-fold mean and std; ``delta_*`` compare a compressed recipe with the invocation's fp32.
    ``df.attrs["runs"]`` holds the full JSON-ready records, ``df.attrs["notes"]`` what the user
    must be told (skipped files, an empty resume).
    """
    recipes = (recipes,) if isinstance(recipes, str) else recipes
    checked = opts.check_run(dict(model=model, protocol=protocol, recipes=recipes, home=home, store=store,
                                  resume=resume, progress=progress, log=log, **options))
    front = {k: checked.pop(k, None) for k in ("home", "store", "resume", "progress", "log", "margin")}
    from serbench.finetune import FinetuneConfig
    from serbench.runner import Runner, RunSpec

    if "epochs" in checked:   # --epochs is the fine-tuning configuration's epochs
        checked["finetune"] = dataclasses.replace(checked.get("finetune") or FinetuneConfig(),
                                                  epochs=checked.pop("epochs"))

    checked["recipes"] = tuple(checked["recipes"])
    shown = progress_mod.wanted(front["progress"])
    with paths.using_home(front["home"]), progress_mod.shown(shown):
        runner = Runner(RunSpec(**checked), store_path=front["store"], resume=bool(front["resume"]),
                        progress=shown, log=front["log"] or (lambda *_: None))
        results = runner.run()
    records = run_records(runner, results)
    df = pd.DataFrame([_flat(r, front["margin"]) for r in records], columns=list(RUN_COLUMNS))
    df.attrs["runs"], df.attrs["notes"] = records, list(runner.notes)
    df.attrs["margin"] = _margin(front["margin"])
    df.attrs["seed"], df.attrs["title"] = runner.seed, _title(runner)
    return df


def run_records(runner, results) -> list[dict]:
    """One JSON-ready record per recipe-run of a finished :class:`~serbench.runner.Runner`."""
    from serbench import backbones

    synthetic = all(s.synthetic for s in runner.sources.values())
    weights = backbones.describe(runner.weights)
    out = []
    for r in results:
        m = r.measurements
        out.append({
            "run_id": r.run_id, "model": runner.entry.name, "recipe": r.recipe, "protocol": runner.protocol.name,
            "mode": runner.spec.mode, "head": runner.head_name, "label_maps": runner.label_maps,
            "ua": r.summary["ua"], "wa": r.summary["wa"], "macro_f1": r.summary["macro_f1"],
            "ci": r.summary["ci"], "paired": r.summary.get("paired"),
            "worst_speakers": r.summary["per_speaker"][:3],
            "size_mb": m.get("size_mb"), "latency_p50_ms": m.get("latency_p50_ms"),
            "latency_measured_on": (m.get("machine") or {}).get("isa_summary"), "latency_clip_s": m.get("clip_seconds"),
            "shared_speakers_train_test": r.summary["audit"]["shared_speakers_train_test"],
            "weights": weights, "synthetic": synthetic, "flags": m.get("flags", []),
            "skipped_files": {n: len(m_.skipped) for n, m_ in runner.manifests.items()},
        })
    return out


def _margin(margin: float | None) -> float:
    from serbench import fmt

    return fmt.EQUIVALENCE_MARGIN if margin is None else margin


def verdict(paired: dict, margin: float | None = None) -> str:
    """What the interval of a compressed run's UA difference to the reference says at ``margin``
    points (:func:`serbench.fmt.verdict`, the one wording used everywhere)."""
    from serbench import fmt

    return fmt.paired_verdict(paired, _margin(margin))


def _flat(r: dict, margin: float | None = None) -> dict:
    ci, p = r["ci"], r["paired"]
    row = {k: r[k] for k in ("run_id", "model", "recipe", "protocol", "mode", "head", "label_maps", "size_mb",
                             "latency_p50_ms", "shared_speakers_train_test", "weights", "synthetic", "flags",
                             "skipped_files")}
    for key in ("ua", "wa", "macro_f1"):
        row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = ci[key]["value"], ci[key]["low"], ci[key]["high"]
    row["ua_fold_mean"], row["ua_fold_std"] = r["ua"]["mean"], r["ua"]["std"]
    row["speakers"] = ci["clusters"]
    if p:
        row.update(delta_ua=p["ua"]["delta"], delta_ua_ci_low=p["ua"]["low"], delta_ua_ci_high=p["ua"]["high"],
                   delta_ua_p=p["ua"]["p_value"], delta_ua_mdd=p["ua"].get("mdd"), mcnemar_p=p["mcnemar"]["p_value"],
                   agreement=p["agreement"], verdict=verdict(p, margin))
    return row


def _title(runner) -> str:
    from serbench import backbones, fmt

    maps = ", ".join(f"{c}: {m}" for c, m in runner.label_maps.items())
    synthetic = all(s.synthetic for s in runner.sources.values())
    return (f"{runner.entry.name}{fmt.positions(runner.entry.positions)} on {runner.protocol.name} "
            f"({runner.spec.mode}, head {runner.head_name}; "
            f"labels {maps}; seed {runner.seed}); weights: {backbones.describe(runner.weights)}"
            + ("; DATA: SYNTHETIC" if synthetic else ""))


def results(store: str | Path | None = None, runs: list[int] | None = None, *,
            home: str | Path | None = None) -> pd.DataFrame:
    """The report's runs table: one row per stored run (by default the latest finished run per
    model, recipe, protocol, mode, kind of data, label map and head), with UA and its interval,
    size, latency, head, label map, weights and data marks."""
    from serbench import store as store_mod
    from serbench.runtable import open_store, run_table, select_runs

    with paths.using_home(home):
        path = Path(store) if store is not None else store_mod.default_path()
        with open_store(path) as db:
            return run_table(db, select_runs(db.runs(), runs))


def bench(model: str, recipes=("fp32",), weights: str = "hub", *, home: str | Path | None = None,
          **options) -> pd.DataFrame:
    """``serbench bench``: one row per recipe (fp32 included) with size, latency, speed-up,
    throughput, memory, energy, fidelity and flags; ``probe`` says what fidelity was measured on
    (``probe_data="NAME=PATH"`` among ``options`` measures it on that corpus, see
    :func:`serbench.recipe_bench.bench`); ``df.attrs["result"]`` is the full record."""
    recipes = [recipes] if isinstance(recipes, str) else recipes
    checked = opts.check(opts.BENCH, dict(model=model, recipes=recipes, weights=weights, home=home, **options))
    home = checked.pop("home", None)
    from serbench.recipe_bench import bench as measure_recipes

    with paths.using_home(home):
        result = measure_recipes(checked.pop("model"), list(checked.pop("recipes")), **checked)
    rows = []
    for rec in result["rows"]:
        row = {}
        for k, v in rec.items():   # nested measurements (latency, fidelity, energy, memory) one level flat
            row.update({f"{k}_{kk}": vv for kk, vv in v.items()} if isinstance(v, dict) else {k: v})
        rows.append({**row, "model": result["model"], "weights": result["weights_label"],
                     "probe": result["probe"]["description"]})
    df = pd.DataFrame(rows)
    df.attrs["result"] = result
    return df


def tune(model: str, recipe: str, min_fidelity: float | None = None, weights: str = "hub", *,
         home: str | Path | None = None, **options) -> dict:
    """``serbench tune``: ``recipe`` with its most sensitive node groups kept in float until ``model``
    reaches the target, written as a new recipe under ``home``'s registry (or ``out=``); returns the
    sensitivities, the choice and what it measured (:func:`serbench.mixed_precision.tune`, whose
    keyword ``options`` it passes on). The target is ``min_fidelity`` (centred cosine, the default
    ``metric="fidelity"``) or, with ``metric="ua"``, ``max_ua_drop`` points of validation UA under
    ``protocol`` on ``data`` / ``synthetic`` corpora."""
    checked = opts.check(opts.TUNE, dict(model=model, recipe=recipe, min_fidelity=min_fidelity, weights=weights,
                                         home=home, **options))
    home = checked.pop("home", None)
    from serbench.mixed_precision import tune as tune_recipe

    with paths.using_home(home):
        return tune_recipe(checked.pop("model"), checked.pop("recipe"), checked.pop("min_fidelity", None),
                           **checked)


def sweep(grid: str | Path, *, ray: str | None = None, resume: bool = False, synthetic: bool | None = None,
          home: str | Path | None = None, store: str | Path | None = None, progress: bool | None = None, log=None,
          **options) -> pd.DataFrame:
    """``serbench sweep``: every cell of a grid file (:mod:`serbench.sweeps.grid`), in this process
    (``ray=None``) or on Ray (``"local"``, ``"auto"`` or a cluster address), with the same numbers
    either way. One row per finished run (:data:`RUN_COLUMNS`); ``df.attrs`` holds ``failures``
    (each failed task with its inputs), ``tasks`` (count per stage), ``timings`` (wall, driver and
    task seconds) and ``executor``. ``options``: ``ray_cpus`` (a local Ray's CPUs),
    ``cpus_per_task``. ``progress``: as :func:`run`'s (None: when stderr is a terminal)."""
    checked = opts.check(opts.SWEEP, dict(grid=grid, ray=ray, resume=resume, synthetic=synthetic, home=home,
                                          store=store, progress=progress, log=log, **options))
    home, grid, checked["log"] = checked.pop("home", None), checked.pop("grid"), checked.get("log") or (lambda *_: None)
    from serbench import sweeps

    checked["progress"] = progress_mod.wanted(checked.get("progress"))
    with paths.using_home(home), progress_mod.shown(checked["progress"]):
        res = sweeps.run(grid, **checked)
    records = [rec for runner, results in res.finished for rec in run_records(runner, results)]
    df = pd.DataFrame([_flat(r) for r in records], columns=list(RUN_COLUMNS))
    df.attrs.update(runs=records, failures=res.failures, tasks=res.tasks, timings=res.timings,
                    executor=res.executor, cells=res.cells)
    return df


def compare(store: str | Path | None = None, runs: list[int] | None = None, out: str | Path | None = None, *,
            figures: bool = True, force: bool = False, home: str | Path | None = None, margin: float | None = None):
    """``serbench compare``: the report on stored runs, a :class:`serbench.report.Report` whose
    tables are DataFrames (``runs`` with Pareto fronts, ``paired``, ``speakers``, ``leakage``,
    ``cross``) and, with ``figures``, its plots. With ``out`` the report is also written there
    (HTML, Markdown, CSV, plots; ``rep.files`` lists them); ``out`` must be new, empty or an
    earlier report unless ``force``, and is checked before any work is done. ``margin``: the
    equivalence margin of the verdicts, in UA points (default :data:`serbench.fmt.EQUIVALENCE_MARGIN`)."""
    opts.check(opts.COMPARE, dict(store=store, runs=runs, out=out, figures=figures, force=force, home=home,
                                  margin=margin))
    from serbench import report
    from serbench import store as store_mod
    from serbench.runtable import open_store

    with paths.using_home(home):
        target = report.check_out(out, force) if out is not None else None
        with open_store(Path(store) if store is not None else store_mod.default_path()) as db:
            rep = report.build(db, runs, figures=figures or target is not None, margin=_margin(margin))
        if target is not None:
            report.write(rep, target, force=force)
    return rep


def export(run_id: int, out: str | Path, recipe: str | None = None, fold: int = 0, *,
           store: str | Path | None = None, home: str | Path | None = None, force: bool = False,
           measure_latency: bool = True, log=None) -> dict:
    """``serbench export``: a stored run's model as a self-contained folder ``out`` (one ONNX
    graph, labels, preprocessing, the standalone runtime, model card); returns the model card."""
    from serbench import deploy

    with paths.using_home(home):
        return deploy.export(int(run_id), out, recipe=recipe, fold=fold, store_path=store, force=force,
                             measure_latency=measure_latency, log=log or (lambda *_: None))


ANALYSE_COLUMNS = ("file", "status", "emotion", "confidence", "duration_s", "speech_s", "windows", "message")


def analyse(model_dir: str | Path, files, *, threads: int | None = None, **options) -> pd.DataFrame:
    """``serbench infer``: the emotion of (long) audio files with an exported model folder, one row
    per file (see :data:`ANALYSE_COLUMNS`; ``confidence`` is the averaged probability of the
    emotion, and one ``p_<class>`` column per class follows). ``options`` are the fields of
    :class:`serbench.runtime.Options` (``vad``, ``window``, ``hop``, ``min_speech``,
    ``block_seconds``, ``vad_threshold``). A file that cannot be read gets ``status`` ``error``
    and its reason in ``message``; ``df.attrs["doc"]`` is the full JSON document (timelines)."""
    files = [files] if isinstance(files, (str, Path)) else files
    checked = opts.check(opts.ANALYSE, dict(model_dir=model_dir, files=files, threads=threads, **options))
    model_dir, files, threads = checked.pop("model_dir"), list(checked.pop("files")), checked.pop("threads", None)
    from serbench import runtime

    doc, _ = runtime.analyse_files(model_dir, files, runtime.Options(**checked), threads)
    rows = []
    for r in doc["results"]:
        dist = r.get("distribution") or {}
        row = {k: r.get(k) for k in ANALYSE_COLUMNS}
        row["confidence"] = dist.get(r["emotion"]) if r.get("emotion") else None
        rows.append({**row, **{f"p_{c}": dist.get(c) for c in doc["labels"]}})
    df = pd.DataFrame(rows, columns=list(ANALYSE_COLUMNS) + [f"p_{c}" for c in doc["labels"]])
    df.attrs["doc"] = doc
    return df
