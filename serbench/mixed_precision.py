"""Fidelity-targeted mixed precision: which quantised parts of a network to keep in float, and a
recipe file that says so (what ``serbench tune`` does).

A quantised recipe loses fidelity unevenly: a few parts of the graph (a layer's feed-forward, the
feature projection) cost most of it. Keeping exactly those in float buys back most of the fidelity
for a small part of the size and speed. So :func:`tune`

1. builds the recipe as it is and reads from its artefact which nodes were quantised, grouped into
   units of the exported graph by their names (:func:`node_groups`: each transformer layer's
   attention projections, its feed-forward, the feature projection, each conv layer, ... whatever
   the exporter's module paths say, so no model's layout is written here);
2. checks that the target can be met at all (every group float), else writes nothing;
3. measures each group's *sensitivity*: the fidelity of the recipe with only that group float;
4. keeps groups float, most sensitive first, until the fidelity reaches the target (greedy: one
   build per step, no search over subsets, which would cost 2^groups builds);
5. writes a new recipe: the same backend, method and options plus the kept nodes in
   ``nodes_to_exclude`` (exact node names, so nothing else matches by accident), with what was
   measured in its description and comments, validated through the registry and rebuilt from its
   own file before it is written (atomically, never over an existing recipe unless ``force``).

Fidelity is measured exactly as ``serbench bench`` measures it (:mod:`serbench.recipe_bench`): the
centred cosine of pooled embeddings against the reference recipe's ONNX artefact on bench's probe
set, calibrated on bench's calibration clips (:mod:`serbench.probe_sets`: synthetic clips of
another seed, or with ``probe_data`` utterances of other speakers; never the probe set). Every
candidate is an ordinary cached artefact, so a second ``tune`` with
another target rebuilds nothing, and the written recipe's artefact is the one ``bench`` then finds.

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


def destination(entry, recipe: RecipeEntry, min_fidelity: float, name: str | None, out, force: bool):
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
    name = name or f"{entry.name}-{recipe.name}-min{min_fidelity:g}"
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


def tune(model: str, recipe: str, min_fidelity: float, weights: str = "hub", *, name: str | None = None,
         out: str | Path | None = None, force: bool = False, probe: int = 16, calibration: int = 32,
         probe_data: str | None = None, seed: int = 0, runs: int = 10, threads: int | None = None,
         log=lambda msg: None) -> dict:
    """Keep the most fidelity-sensitive node groups of ``recipe`` in float until ``model``'s centred
    cosine to the reference reaches ``min_fidelity``; write that recipe and return what was measured.

    ``probe``, ``calibration``, ``probe_data`` and ``seed`` have ``serbench bench``'s meaning and
    defaults, so ``bench`` with the same ones measures the written recipe on the same probe set with
    the same calibration (and finds its artefact cached).
    Returns the per-group sensitivities (``groups``, graph order), the greedy steps, the chosen
    groups and nodes, the base / final fidelity, size and latency (``runs`` interleaved timings
    with the reference), the recipe name and the ``path`` written.
    """
    if not 0 < min_fidelity <= 1:
        raise SerbenchError(f"--min-fidelity must be in (0, 1]: centred cosine is at most 1, got {min_fidelity}")
    if probe < 2:
        raise SerbenchError("--probe must be at least 2 (centred cosine needs a mean)")
    entry, base = registry.load_model(model), registry.load_recipe(recipe)
    check_tunable(entry, base)
    name, path = destination(entry, base, min_fidelity, name, out, force)
    threads = threads or runtime.default_threads()
    offered = calibration if base.calibration else 0
    pset = probe_sets.choose(probe_data, entry, probe, offered, seed)
    trial = Trials(entry, weights, threads, pset)
    log(f"{entry.name}: weights {backbones.describe(trial.net[1])}; {threads} threads; fidelity vs "
        f"{trial.reference.name}; target {min_fidelity}")
    log(pset.description)
    base_m = trial(base)
    art = base_m["artefact"]
    groups = node_groups(art.path / art.file, base.options.get("op_types_to_quantize"))
    if not groups:
        raise SerbenchError(f"recipe {base.name!r} quantises no node of {entry.name!r} that tune can find")
    log(f"  {base.name}: centred cosine {base_m['fidelity']:.5f}, {base_m['size_mb']} MB; "
        f"{len(groups)} quantised node groups")
    order = list(groups)

    def nodes(chosen):
        return [n for g in order if g in chosen for n in groups[g]]  # graph order: one key per set

    sens, steps, chosen = [], [], []
    if base_m["fidelity"] < min_fidelity:
        every = trial(variant(base, nodes(order)))
        log(f"  every group float: centred cosine {every['fidelity']:.5f}")
        if every["fidelity"] < min_fidelity:
            raise SerbenchError(
                f"target {min_fidelity} cannot be met: with all {len(groups)} node groups of {base.name!r} in "
                f"float, {entry.name!r} measures centred cosine {every['fidelity']:.5f}; nothing written")
        for g in order:
            m = trial(variant(base, groups[g]))
            sens.append({"group": g, "nodes": groups[g], "fidelity": m["fidelity"],
                         "gain": round(m["fidelity"] - base_m["fidelity"], 5), "size_mb": m["size_mb"]})
            log(f"  only {g} float ({len(groups[g])} nodes): {m['fidelity']:.5f}")
        for s in sorted(sens, key=lambda s: -s["fidelity"]):  # most sensitive first; ties in graph order
            chosen.append(s["group"])
            m = trial(variant(base, nodes(chosen)))
            steps.append({"groups": len(chosen), "added": s["group"], "fidelity": m["fidelity"],
                          "size_mb": m["size_mb"]})
            log(f"  + {s['group']}: {m['fidelity']:.5f}, {m['size_mb']} MB")
            if m["fidelity"] >= min_fidelity:
                break
    final = variant(base, nodes(chosen))
    final_m = trial(final)
    clip = measure.clips(1, measure.PROBE_SEED)[0][0]  # bench's latency clip, whatever the probe set
    timed = measure.latency({k: _embedder(a, clip, threads) for k, a in
                             (("reference", trial.ref_art), ("base", art), ("final", final_m["artefact"]))}, runs)
    prov = trial.net[1]
    result = {"model": entry.name, "recipe": base.name, "name": name, "path": str(path),
              "min_fidelity": min_fidelity, "weights": prov, "weights_label": backbones.describe(prov),
              "random_weights": backbones.is_random(prov), "threads": threads, "reference": trial.reference.name,
              "probe": pset.source, "probe_ids": pset.probe_ids, "calibration_ids": pset.calibration_ids,
              "notes": list(pset.notes), "groups": sens, "steps": steps, "chosen": chosen,
              "float_nodes": nodes(chosen), "options": final.options,
              "reference_measured": {"size_mb": trial.ref_art.size_mb,
                                     "latency_p50_ms": timed["reference"]["p50_ms"]}}
    for key, m in (("base", base_m), ("final", final_m)):
        lat = timed[key]
        result[key] = {"fidelity": m["fidelity"], "fidelity_detail": m["detail"], "size_mb": m["size_mb"],
                       "latency_p50_ms": lat["p50_ms"],
                       "speedup_vs_fp32": round(timed["reference"]["p50_ms"] / lat["p50_ms"], 3)}
    text = recipe_text(base, result)
    written = _verify(text, name, trial)
    result["verified_fidelity"] = written["fidelity"]
    if written["fidelity"] < min_fidelity:
        raise SerbenchError(f"not written: recipe {name!r} rebuilt from its own file measures centred cosine "
                            f"{written['fidelity']:.5f} (the same candidate measured {final_m['fidelity']:.5f}) "
                            f"< {min_fidelity}: its quantisation did not reproduce")
    atomic.write_text(path, text, f"recipe {name}")
    return result


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


def recipe_text(base: RecipeEntry, r: dict) -> str:
    """The new recipe's YAML: the base recipe's data with a new name, description and exclusions,
    and comments saying how it was chosen and what it measured (numbers of this machine, once)."""
    b, f, n, ref = r["base"], r["final"], len(r["chosen"]), r["reference_measured"]
    measured = (f"centred cosine {f['fidelity']:.4f} (base {b['fidelity']:.4f}), {_mb(f['size_mb'])} MB "
                f"(base {_mb(b['size_mb'])}), {f['speedup_vs_fp32']:.2f}x {r['reference']} speed "
                f"(base {b['speedup_vs_fp32']:.2f}x) on {r['model']}, weights {r['weights_label']}")
    what = f"{n} node group{'s' if n != 1 else ''} kept float" if n else "no node group kept float"
    data = {**base.content, "name": r["name"],
            "description": f"{base.name} with {what} for centred cosine >= {r['min_fidelity']:g}: {measured}",
            "options": {**(base.content.get("options") or {}), EXCLUDE: list(r["options"].get(EXCLUDE, []))}}
    if not data["options"][EXCLUDE]:
        del data["options"][EXCLUDE]
    lines = [(f"# Written by `serbench tune --model {r['model']} --recipe {base.name} --min-fidelity "
              f"{r['min_fidelity']:g}`:"),
             f"# recipe {base.name} ({base.path.name}) plus node groups kept in float, the most sensitive first,",
             f"# until the centred cosine of pooled embeddings against the {r['reference']} ONNX artefact",
             "# reached the target, measured as `serbench bench` measures it:",
             f"# {r['probe']['description']}.",
             f"# The node names are those of {r['model']}'s exported graph.",
             f"# Measured on {r['model']}, weights {r['weights_label']}, {r['threads']} threads",
             "# (latency: p50 of one 8 s clip, the three timed interleaved in one run):",
             f"#   {r['reference']}: {_mb(ref['size_mb'])} MB, {ref['latency_p50_ms']:.0f} ms",
             (f"#   {base.name}: cos {b['fidelity']:.5f}, {_mb(b['size_mb'])} MB, {b['latency_p50_ms']:.0f} ms "
              f"({b['speedup_vs_fp32']:.2f}x)"),
             (f"#   {r['name']}: cos {f['fidelity']:.5f}, {_mb(f['size_mb'])} MB, {f['latency_p50_ms']:.0f} ms "
              f"({f['speedup_vs_fp32']:.2f}x)")]
    if r["groups"]:
        lines.append("# Sensitivity: centred cosine with only that group float (* = kept float):")
        lines += [f"#   {'*' if s['group'] in r['chosen'] else ' '} {s['fidelity']:.5f}  {s['group']} "
                  f"({len(s['nodes'])} node{'s' if len(s['nodes']) != 1 else ''})"
                  for s in sorted(r["groups"], key=lambda s: -s["fidelity"])]
    else:
        lines.append("# The base recipe already met the target: nothing is kept float beyond it.")
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False, width=100)
