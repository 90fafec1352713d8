"""Targeted mixed precision: which quantised parts of a network to keep in float, and a recipe
file that says so (what ``serbench tune`` does).

A quantised recipe loses accuracy unevenly: a few parts of the graph (a layer's feed-forward, the
feature projection) cost most of it. Keeping exactly those in float buys back most of it for a
small part of the size and speed. So :func:`tune`

1. builds the recipe as it is and reads from its artefact which nodes were quantised, grouped into
   units of the exported graph by their names (:func:`node_groups`: each transformer layer's
   attention projections, its feed-forward, the feature projection, each conv layer, ... whatever
   the exporter's module paths say, so no model's layout is written here);
2. checks that the target can be met at all (every group float), else writes nothing;
3. measures each group's *sensitivity*: the scores of the recipe with only that group float;
4. keeps groups float, most sensitive first (by cosine: :func:`ranked`), until the score reaches
   the target (greedy: one build per step, no search over subsets, which would cost 2^groups
   builds); a target met only with every group float writes nothing (that is the reference graph);
5. writes a new recipe: the same backend, method and options plus the kept nodes in
   ``nodes_to_exclude`` (exact node names, so nothing else matches by accident), with what was
   measured in its description and comments, validated through the registry and rebuilt from its
   own file before it is written (atomically, never over an existing recipe unless ``force``).

The score is one of two (:class:`Target`):

* ``fidelity`` (default): the centred cosine of pooled embeddings against the reference recipe's
  ONNX artefact, exactly as ``serbench bench`` measures it (:mod:`serbench.recipe_bench`), on
  bench's probe set, calibrated on bench's calibration clips (:mod:`serbench.probe_sets`: synthetic
  clips of another seed, or with ``probe_data`` utterances of other speakers; never the probe set).
  The written recipe's artefact is the one ``bench`` then finds cached.
* ``ua``: validation ΔUA against the reference under a protocol, scored as ``serbench run``
  scores, on each fold's validation utterances only (:mod:`serbench.validation_trials`). Cosine
  says how far the embeddings moved; this says what that costs a classifier. ``run`` with the
  written recipe then finds every fold's artefact cached, and measures it on the test splits.

Every candidate is an ordinary cached artefact, so a second ``tune`` with another target rebuilds
nothing.

Named ``mixed_precision``, not ``tune``: the front door exports a function ``serbench.tune``, and a
submodule of that name would replace it on the package as soon as it was imported.
"""
from __future__ import annotations

import dataclasses
import glob
import re
import tempfile
from pathlib import Path

import yaml

from serbench import atomic, backbones, measure, paths, probe_sets, registry, runtime
from serbench.artefacts import cache, encoders, methods
from serbench.entries import RecipeEntry
from serbench.errors import SerbenchError

EXCLUDE = "nodes_to_exclude"  # the recipe option that keeps nodes in float
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


# ---- which nodes are quantised, in which groups -------------------------------------------------


def quantised_nodes(model_file: str | Path, op_types=None) -> list[tuple[str, bool]]:
    """``(original node name, has weights)`` of every node a quantised ONNX graph runs in int8.

    QDQ format: a node (of ``op_types``, when the recipe lists them) that reads a
    ``DequantizeLinear`` output; a quantised Conv's output is quantised too, so without the op
    filter its float consumers (Gelu, ...) would count. QOperator format: onnxruntime names the
    integer node after the float one with ``_quant`` appended. "Has weights": an input is an
    initializer, or the dequantised form of one.
    """
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def dequantised(t):
        p = producer.get(t)
        return p is not None and p.op_type == "DequantizeLinear"

    def weight(t):
        return t in inits or (dequantised(t) and producer[t].input[0] in inits)

    out = []
    for node in graph.node:
        if node.op_type in _QDQ:
            continue
        if node.name.endswith("_quant") and (node.op_type.startswith("QLinear") or node.op_type.endswith("Integer")):
            out.append((node.name[:-len("_quant")], any(weight(t) for t in node.input)))
        elif any(dequantised(t) for t in node.input) and (not op_types or node.op_type in op_types):
            out.append((node.name, any(weight(t) for t in node.input)))
    return out


def group_of(name: str, has_weights: bool) -> str:
    """The unit a node belongs to, from its exporter-given module path.

    ``/m/encoder/layers.0/attention/q_proj/MatMul`` is the ``q_proj`` module's MatMul; a node with
    weights belongs to its module's parent (``.../layers.0/attention``: q, k, v and out
    projections together; ``.../conv_layers.3`` for a conv; ``/m/feature_projection``), a node
    without (attention scores) to its own module (``.../attention`` again). A name without a path
    is its own group.
    """
    module = name.rpartition("/")[0]
    if not module.strip("/"):
        return name
    if has_weights:
        parent = module.rpartition("/")[0]
        if parent.strip("/"):
            return parent
    return module


def node_groups(model_file: str | Path, op_types=None) -> dict[str, list[str]]:
    """Group name -> its quantised nodes' names, both in graph order (:func:`group_of`)."""
    groups: dict[str, list[str]] = {}
    for name, has_weights in quantised_nodes(model_file, op_types):
        groups.setdefault(group_of(name, has_weights), []).append(name)
    return groups


# ---- checks made before anything is built -------------------------------------------------------


def check_tunable(entry, recipe: RecipeEntry) -> None:
    """Refuse a model or recipe that has nothing to keep in float, naming why."""
    if entry.weight_free:
        raise SerbenchError(f"model {entry.name!r} is weight-free: it has no quantised graph to tune")
    method = methods.find(recipe.backend, recipe.method)
    if not method.onnx or EXCLUDE not in {f.name for f in method.options}:
        raise SerbenchError(
            f"recipe {recipe.name!r} ({recipe.path}): its method {recipe.backend}/{recipe.method} has no "
            f"{EXCLUDE!r} option, so it cannot keep parts of the graph in float; tune a recipe whose method "
            f"has one (onnxruntime/static, e.g. static-int8)")


def destination(entry, recipe: RecipeEntry, goal, name: str | None, out, force: bool):
    """The new recipe's name and file: ``out``, else ``$SERBENCH_HOME/registry/recipes/NAME.yaml``
    (a folder the registry searches). An existing file, or a name the registry already knows, is
    refused unless ``force``: a tuned recipe silently shadowing another would change its results."""
    if out is not None:
        out = Path(out)
        if out.suffix not in (".yaml", ".yml"):
            raise SerbenchError(f"--out {out}: a recipe file must end in .yaml")
        if name is not None and name != out.stem:
            raise SerbenchError(f"--name {name!r} differs from the --out file's name {out.stem!r}: a recipe's "
                                "name is its file name")
        name = out.stem
    name = name or f"{entry.name}-{recipe.name}-{goal.suffix}"
    if not NAME.match(name):
        raise SerbenchError(f"recipe name {name!r}: use letters, digits, '.', '_' and '-' (first a letter or "
                            "digit), so it is a file name and a --recipe argument")
    path = out if out is not None else paths.home() / "registry" / "recipes" / f"{name}.yaml"
    known = registry.recipe_files().get(name)
    if not force:
        if path.exists():
            raise SerbenchError(f"{path} exists; not overwriting it (--force replaces it, or choose --name/--out)")
        if known is not None:
            raise SerbenchError(f"a recipe named {name!r} already exists ({known}); choose another --name "
                                "(or --force)")
    return name, path


# ---- measuring candidates ------------------------------------------------------------------------


def variant(recipe: RecipeEntry, float_nodes: list[str]) -> RecipeEntry:
    """``recipe`` with ``float_nodes`` (exact names) added to its exclusions: one tune candidate.
    One name for every candidate: the cache key covers the options, so each is its own artefact."""
    if not float_nodes:
        return recipe
    exclude = list(dict.fromkeys([*recipe.options.get(EXCLUDE, []), *map(glob.escape, float_nodes)]))
    content = {**recipe.content, "name": f"{recipe.name}.tune",
               "options": {**(recipe.content.get("options") or {}), EXCLUDE: exclude}}
    return dataclasses.replace(recipe, name=content["name"], content=content,
                               options={**recipe.options, EXCLUDE: exclude})


class Trials:
    """Builds and measures recipes against the reference's probe embeddings, once each."""

    def __init__(self, entry, weights, threads, pset: probe_sets.ProbeSet):
        self.entry, self.threads, self.pset = entry, threads, pset
        self.net = backbones.build(entry, weights)
        self.probe, self.cal, self.cal_ids = pset.probe, pset.calibration, pset.calibration_ids
        self.reference = registry.reference_recipe()
        self.ref_art = cache.build(entry, self.reference, self.net)
        self.ref_emb = measure.embed_all(encoders.open_encoder(self.ref_art, threads), self.probe)
        self.done: dict[tuple, dict] = {}

    def __call__(self, recipe: RecipeEntry) -> dict:
        key = (recipe.name, repr(recipe.options))
        if key not in self.done:
            art = cache.build(self.entry, recipe, self.net, self.cal, self.cal_ids)
            emb = measure.embed_all(encoders.open_encoder(art, self.threads), self.probe)
            fid = measure.fidelity(self.ref_emb, emb)
            self.done[key] = {"artefact": art, "fidelity": fid["centered_cosine"], "detail": fid,
                              "size_mb": art.size_mb}
        return self.done[key]


# ---- the search ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """What a candidate must reach: ``metric`` ``fidelity`` (centred cosine to the reference >=
    ``value``) or ``ua`` (validation ΔUA to the reference >= ``-value`` points). ``key`` is the
    trial field compared with ``threshold``."""
    metric: str
    value: float

    @property
    def key(self) -> str:
        return "fidelity" if self.metric == "fidelity" else "ua_delta"

    @property
    def threshold(self) -> float:
        return self.value if self.metric == "fidelity" else -self.value / 100

    def met(self, m: dict) -> bool:
        return m[self.key] >= self.threshold - 1e-12

    def show(self, x: float) -> str:
        return f"{x:.5f}" if self.metric == "fidelity" else f"ΔUA {100 * x:+.2f}"

    @property
    def text(self) -> str:
        return (f"centred cosine >= {self.value:g}" if self.metric == "fidelity"
                else f"validation UA at most {self.value:g} points below the reference")

    @property
    def suffix(self) -> str:   # of the default recipe name
        return f"min{self.value:g}" if self.metric == "fidelity" else f"ua{self.value:g}"


def _given(args: dict) -> list[str]:
    """The flags of ``args`` (flag -> value) that were given: neither None nor false."""
    return [flag for flag, v in args.items() if v is not None and v is not False]


def target(metric: str, min_fidelity, max_ua_drop, ua_args: dict, fidelity_args: dict) -> Target:
    """The target, with each metric's arguments required and the other metric's refused:
    ``ua_args`` (--protocol, --data, --synthetic) and ``fidelity_args`` (--probe, --probe-data)
    map flags to the values given."""
    if metric == "fidelity":
        if min_fidelity is None:
            raise SerbenchError("--metric fidelity needs --min-fidelity (a centred cosine in (0, 1])")
        if not 0 < min_fidelity <= 1:
            raise SerbenchError(f"--min-fidelity must be in (0, 1]: centred cosine is at most 1, got {min_fidelity}")
        wrong = _given({"--max-ua-drop": max_ua_drop, **ua_args})
        if wrong:
            raise SerbenchError(f"{', '.join(wrong)} belong to --metric ua; --metric fidelity measures a probe set "
                                "(--probe, --probe-data)")
        return Target("fidelity", float(min_fidelity))
    if metric == "ua":
        if max_ua_drop is None or ua_args["--protocol"] is None:
            raise SerbenchError("--metric ua needs --protocol (whose validation folds score each candidate) and "
                                "--max-ua-drop (points of validation UA a candidate may lose to the reference)")
        if ua_args["--synthetic"] and ua_args["--data"]:
            raise SerbenchError("--synthetic and --data contradict each other: give one or the other")
        if not 0 <= max_ua_drop < 100:
            raise SerbenchError(f"--max-ua-drop is in points of UA, in [0, 100), got {max_ua_drop}")
        wrong = _given({"--min-fidelity": min_fidelity, **fidelity_args})
        if wrong:
            raise SerbenchError(f"{', '.join(wrong)} belong to --metric fidelity; --metric ua scores the "
                                "protocol's validation folds (--protocol, --data or --synthetic)")
        return Target("ua", float(max_ua_drop))
    raise SerbenchError(f"--metric must be fidelity or ua, not {metric!r}")


def tune(model: str, recipe: str, min_fidelity: float | None = None, weights: str = "hub", *,
         metric: str = "fidelity", max_ua_drop: float | None = None, protocol: str | None = None,
         data: dict | None = None, synthetic: bool = False, synthetic_size: str = "small",
         name: str | None = None, out: str | Path | None = None, force: bool = False, probe: int | None = None,
         calibration: int = 32, probe_data: str | None = None, seed: int | None = None, repeats: int = 10,
         threads: int | None = None, log=lambda msg: None) -> dict:
    """Keep the most sensitive node groups of ``recipe`` in float until ``model`` reaches the target;
    write that recipe and return what was measured.

    ``metric="fidelity"``: centred cosine to the reference >= ``min_fidelity``, measured as
    ``serbench bench`` measures it (``probe``, ``calibration``, ``probe_data`` and ``seed`` have
    bench's meaning and defaults, so ``bench`` with the same ones finds the written recipe's
    artefact cached). ``metric="ua"``: validation ΔUA to the reference >= ``-max_ua_drop`` points
    under ``protocol`` on ``data`` / ``synthetic`` corpora, scored as ``serbench run`` scores
    (:mod:`serbench.validation_trials`; ``seed``: the protocol's unless given; ``calibration``:
    run's calibration clips per fold), never on a test utterance.
    Returns the per-group sensitivities (``groups``, graph order), the greedy steps, the chosen
    groups and nodes, the base / final scores, size and latency (``repeats`` interleaved timings
    with the reference), the recipe name and the ``path`` written.
    """
    goal = target(metric, min_fidelity, max_ua_drop, {"--protocol": protocol, "--data": data, "--synthetic": synthetic},
                  {"--probe": probe, "--probe-data": probe_data})
    probe = 16 if probe is None else probe
    if probe < 2:
        raise SerbenchError("--probe must be at least 2 (centred cosine needs a mean)")
    entry, base = registry.load_model(model), registry.load_recipe(recipe)
    check_tunable(entry, base)
    name, path = destination(entry, base, goal, name, out, force)
    threads = threads or runtime.default_threads()
    if goal.metric == "fidelity":
        pset = probe_sets.choose(probe_data, entry, probe, calibration if base.calibration else 0,
                                 0 if seed is None else seed)
        trial = Trials(entry, weights, threads, pset)
        source, notes = pset.source, list(pset.notes)
    else:
        from serbench.validation_trials import ValidationTrials

        trial = ValidationTrials(entry, weights, threads, protocol=protocol, data=data, synthetic=synthetic,
                                 synthetic_size=synthetic_size, seed=seed, calibration=calibration, log=log)
        source, notes = trial.source, trial.notes
    log(f"{entry.name}: weights {backbones.describe(trial.net[1])}; {threads} threads; against "
        f"{trial.reference.name}; target {goal.text}")
    log(source["description"])
    base_m = trial(base)
    art = base_m["artefact"]
    groups = node_groups(art.path / art.file, base.options.get("op_types_to_quantize"))
    if not groups:
        raise SerbenchError(f"recipe {base.name!r} quantises no node of {entry.name!r} that tune can find")
    log(f"  {base.name}: {goal.show(base_m[goal.key])}, {base_m['size_mb']} MB; {len(groups)} quantised node groups")
    if goal.metric == "ua" and base_m["delta_ua"]["low"] <= 0 <= base_m["delta_ua"]["high"]:
        notes.append(_resolution(goal, base_m))
    order = list(groups)

    def nodes(chosen):
        return [n for g in order if g in chosen for n in groups[g]]  # graph order: one key per set

    sens, steps, chosen = [], [], []
    if not goal.met(base_m):
        every = trial(variant(base, nodes(order)))
        log(f"  every group float: {goal.show(every[goal.key])}")
        if not goal.met(every):
            raise SerbenchError(
                f"target {goal.text} cannot be met: with all {len(groups)} node groups of {base.name!r} in "
                f"float, {entry.name!r} measures {goal.show(every[goal.key])}; nothing written")
        for g in order:
            m = trial(variant(base, groups[g]))
            sens.append({"group": g, "nodes": groups[g], **_scores(m), "size_mb": m["size_mb"],
                         "gain": round(m[goal.key] - base_m[goal.key], 5)})
            log(f"  only {g} float ({len(groups[g])} nodes): {goal.show(m[goal.key])}")
        for s in ranked(sens):
            chosen.append(s["group"])
            m = trial(variant(base, nodes(chosen)))
            steps.append({"groups": len(chosen), "added": s["group"], **_scores(m), "size_mb": m["size_mb"]})
            log(f"  + {s['group']}: {goal.show(m[goal.key])}, {m['size_mb']} MB")
            if goal.met(m):
                break
        if len(chosen) == len(order):
            raise SerbenchError(
                f"target {goal.text} was met only with all {len(order)} node groups of {base.name!r} in float: "
                f"that is the {trial.reference.name} graph with quantise/dequantise pairs, nothing gained; nothing "
                f"written. {_resolution(goal, base_m)}")
    final = variant(base, nodes(chosen))
    final_m = trial(final)
    clip = measure.clips(1, measure.PROBE_SEED)[0][0]  # bench's latency clip, whatever the probe set
    timed = measure.latency({k: _embedder(a, clip, threads) for k, a in
                             (("reference", trial.ref_art), ("base", art), ("final", final_m["artefact"]))}, repeats)
    prov = trial.net[1]
    result = {"model": entry.name, "recipe": base.name, "name": name, "path": str(path), "metric": goal.metric,
              "target": {"metric": goal.metric, "value": goal.value, "text": goal.text},
              "min_fidelity": goal.value if goal.metric == "fidelity" else None,
              "max_ua_drop": goal.value if goal.metric == "ua" else None,
              "weights": prov, "weights_label": backbones.describe(prov),
              "random_weights": backbones.is_random(prov), "threads": threads, "reference": trial.reference.name,
              "measured_on": source, "notes": notes, "groups": sens, "steps": steps, "chosen": chosen,
              "float_nodes": nodes(chosen), "options": final.options,
              "reference_measured": {"size_mb": trial.ref_art.size_mb,
                                     "latency_p50_ms": timed["reference"]["p50_ms"]}}
    if goal.metric == "fidelity":
        result.update(probe=source, probe_ids=pset.probe_ids, calibration_ids=pset.calibration_ids)
    for key, m in (("base", base_m), ("final", final_m)):
        lat = timed[key]
        result[key] = {**_scores(m), "fidelity_detail": m["detail"], "size_mb": m["size_mb"],
                       "latency_p50_ms": lat["p50_ms"],
                       "speedup_vs_fp32": round(timed["reference"]["p50_ms"] / lat["p50_ms"], 3)}
    text = recipe_text(base, result)
    written = _verify(text, name, trial)
    result["verified_fidelity"] = written["fidelity"]
    result["verified"] = _scores(written)
    if not goal.met(written):
        raise SerbenchError(f"not written: recipe {name!r} rebuilt from its own file measures "
                            f"{goal.show(written[goal.key])} (the same candidate measured "
                            f"{goal.show(final_m[goal.key])}), short of {goal.text}: its quantisation did not "
                            "reproduce")
    atomic.write_text(path, text, f"recipe {name}")
    return result


def ranked(sens: list[dict]) -> list[dict]:
    """Groups most sensitive first: by the cosine with only that group float (ties in graph order),
    whatever the target. With ``--metric ua`` that is the cosine on the validation utterances: UA
    moves in whole utterances, and on trained whisper-tiny.en (RAVDESS, 360 validation predictions)
    the ten single-group ΔUAs lay between -1.4 and -2.7 points with intervals about ±3 wide, so a
    ranking by them is a ranking by noise; UA decides only where to stop."""
    return sorted(sens, key=lambda s: -s["fidelity"])


def _resolution(goal: Target, base_m: dict) -> str:
    """What validation can resolve, from the base's paired interval (``--metric ua`` only)."""
    if goal.metric != "ua":
        return ""
    d = base_m["delta_ua"]
    return (f"The base's validation ΔUA is {100 * d['delta']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]: "
            + ("its interval covers 0, so this validation set cannot tell the base from the reference, and a "
               "target finer than the interval chases noise." if d["low"] <= 0 <= d["high"] else
               "choose a target the interval can resolve."))


_SCORES = ("fidelity", "ua", "ua_delta", "delta_ua", "mcnemar_p", "agreement")


def _scores(m: dict) -> dict:
    """A trial's scores, as plain data (a fidelity trial has only ``fidelity``)."""
    return {k: m[k] for k in _SCORES if k in m}


def _embedder(art, clip, threads):
    enc = encoders.open_encoder(art, threads)
    return lambda: enc.embed(clip)


def _verify(text: str, name: str, trial: Trials) -> dict:
    """The recipe as it will be written, loaded through the registry (so a file it cannot read is
    never written) and built from that content: the very artefact ``bench`` will find cached."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / f"{name}.yaml"
        staged.write_text(text)
        return trial(registry.load_recipe(str(staged)))


# ---- the file written ---------------------------------------------------------------------------


def _mb(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def _measured(m: dict, metric: str, digits: int = 5) -> str:
    """One candidate's scores for the recipe file: cosine, and for ``ua`` validation UA and ΔUA."""
    if metric == "fidelity":
        return f"cos {m['fidelity']:.{digits}f}"
    d = m["delta_ua"]
    return (f"val UA {100 * m['ua']:.1f}, ΔUA {100 * d['delta']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], "
            f"cos {m['fidelity']:.4f}")


def recipe_text(base: RecipeEntry, r: dict) -> str:
    """The new recipe's YAML: the base recipe's data with a new name, description and exclusions,
    and comments saying how it was chosen and what it measured (numbers of this machine, once)."""
    b, f, n, ref, metric = r["base"], r["final"], len(r["chosen"]), r["reference_measured"], r["metric"]
    measured = (f"{_measured(f, metric, 4)} (base {_measured(b, metric, 4)}), {_mb(f['size_mb'])} MB "
                f"(base {_mb(b['size_mb'])}), {f['speedup_vs_fp32']:.2f}x {r['reference']} speed "
                f"(base {b['speedup_vs_fp32']:.2f}x) on {r['model']}, weights {r['weights_label']}")
    what = f"{n} node group{'s' if n != 1 else ''} kept float" if n else "no node group kept float"
    goal = r["target"]["text"]
    data = {**base.content, "name": r["name"],
            "description": f"{base.name} with {what} for {goal}: {measured}",
            "options": {**(base.content.get("options") or {}), EXCLUDE: list(r["options"].get(EXCLUDE, []))}}
    if not data["options"][EXCLUDE]:
        del data["options"][EXCLUDE]
    flag = (f"--min-fidelity {r['min_fidelity']:g}" if metric == "fidelity" else
            f"--metric ua --protocol {r['measured_on']['protocol']} --max-ua-drop {r['max_ua_drop']:g}")
    how = (["# until the centred cosine of pooled embeddings against the "
            f"{r['reference']} ONNX artefact", "# reached the target, measured as `serbench bench` measures it:"]
           if metric == "fidelity" else
           [f"# until the validation UA (paired with {r['reference']}, the same heads) reached the target,",
            "# scored as `serbench run` scores, on validation utterances only:"])
    lines = [f"# Written by `serbench tune --model {r['model']} --recipe {base.name} {flag}`:",
             f"# recipe {base.name} ({base.path.name}) plus node groups kept in float, the most sensitive first,",
             *how, f"# {r['measured_on']['description']}.",
             f"# The node names are those of {r['model']}'s exported graph.",
             f"# Measured on {r['model']}, weights {r['weights_label']}, {r['threads']} threads",
             "# (latency: p50 of one 8 s clip, the three timed interleaved in one run):",
             f"#   {r['reference']}: {_mb(ref['size_mb'])} MB, {ref['latency_p50_ms']:.0f} ms",
             (f"#   {base.name}: {_measured(b, metric)}, {_mb(b['size_mb'])} MB, {b['latency_p50_ms']:.0f} ms "
              f"({b['speedup_vs_fp32']:.2f}x)"),
             (f"#   {r['name']}: {_measured(f, metric)}, {_mb(f['size_mb'])} MB, {f['latency_p50_ms']:.0f} ms "
              f"({f['speedup_vs_fp32']:.2f}x)")]
    if r["groups"]:
        lines.append("# Sensitivity: the score with only that group float (* = kept float):")
        lines += [f"#   {'*' if s['group'] in r['chosen'] else ' '} {_measured(s, metric)}  {s['group']} "
                  f"({len(s['nodes'])} node{'s' if len(s['nodes']) != 1 else ''})"
                  for s in ranked(r["groups"])]
    else:
        lines.append("# The base recipe already met the target: nothing is kept float beyond it.")
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False, width=100)
