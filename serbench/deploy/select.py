"""Which run, which backbone artefact and which trained head a ``serbench export`` takes.

This is kept apart from the graph surgery because it is the part that reads the results store and
decides, and its refusals are about provenance, not about ONNX: a model folder must be the model a
run measured (or say plainly that it is not).

Which backbone: ``--recipe`` defaults to the run's own. Another recipe is taken from the run that
the same ``serbench run`` invocation made for it (same configuration but the recipe: same folds,
same head, its own calibration and its own UA), when there is one. Otherwise an uncalibrated
recipe is rebuilt for a probe-mode run whose weights can be rebuilt (the card then says its
accuracy was not measured); a calibrated recipe is refused, since its calibration must come from
that fold's training utterances and only a run records them.
"""
from __future__ import annotations

from pathlib import Path

from serbench import backbones, heads, registry, store
from serbench.artefacts import cache, methods
from serbench.entries import RecipeEntry
from serbench.errors import SerbenchError


def _strip(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "recipe_entry"}


def _sibling(db: store.Store, run: dict, recipe: str, fold: int) -> dict | None:
    """The finished run of the same invocation (configuration equal but for the recipe) for ``recipe``."""
    runs = db.runs()
    same = runs[(runs["model"] == run["model"]) & (runs["protocol"] == run["protocol"])
                & (runs["mode"] == run["mode"]) & (runs["recipe"] == recipe)
                & (runs["status"] == "finished")]
    for rid in sorted(same["id"], reverse=True):
        other = db.run(int(rid))
        if _strip(other["config"]) == _strip(run["config"]) and fold in db.finished_folds(int(rid)):
            return other
    return None


def weights_spec(prov: dict) -> str:
    """A ``--weights`` spec that rebuilds the weights a run used (refuses the ones it cannot)."""
    kind = prov.get("kind")
    if kind == "random":
        return f"random:{prov['seed']}"
    if kind == "hub":
        return "hub"
    if kind == "local":
        return prov["path"]
    raise SerbenchError(f"cannot rebuild weights of kind {kind!r} ({backbones.describe(prov)})")


def _rebuild(run: dict, recipe: RecipeEntry) -> cache.Artefact:
    cfg = run["config"]
    if run["mode"] != "probe":
        raise SerbenchError(f"run {run['id']} fine-tuned its backbone per fold and did not keep it, so no other "
                            f"recipe can be built from it; export the run that `serbench run` made for "
                            f"recipe {recipe.name!r} (run it with --recipe {run['recipe']},{recipe.name})")
    if recipe.calibration:
        raise SerbenchError(f"recipe {recipe.name!r} is calibrated on the fold's training utterances, and only a "
                            f"run records which; run `serbench run` with --recipe {run['recipe']},{recipe.name} "
                            "and export the run it makes for that recipe")
    entry = registry.load_model(run["model"])
    if entry.content != cfg["model_entry"]:
        raise SerbenchError(f"registry entry {run['model']!r} ({entry.path}) changed since run {run['id']}; "
                            "cannot rebuild its backbone faithfully")
    spec = weights_spec(cfg["weights_source"])
    art = cache.build(entry, recipe, spec)
    if {k: v for k, v in art.provenance["weights"].items() if k != "label"} != \
            {k: v for k, v in cfg["weights_source"].items() if k != "label"}:
        raise SerbenchError(f"the weights for {run['model']!r} are no longer the ones run {run['id']} used "
                            f"({backbones.describe(cfg['weights_source'])})")
    return art


def resolve(db: store.Store, run_id: int, recipe: str | None, fold: int) -> dict:
    """What to export: ``{run, asked_run, recipe, artefact, head_path, measured, note, fold, details}``."""
    run = db.run(run_id)
    if run["status"] != "finished":
        raise SerbenchError(f"run {run_id} is not finished (status: {run['status']}"
                            + (f"; error: {run['error']}" if run.get("error") else "")
                            + "): its accuracy is not known, so it is not exported; `serbench run ... --resume` "
                              "finishes it")
    recipe = recipe or run["recipe"]
    registry.load_recipe(recipe)  # an unknown name fails here, with the registry's message
    kind = backbones.KINDS[(run["config"].get("model_entry") or {}).get("kind", "transformers")]
    if kind.weight_free:
        raise SerbenchError(f"cannot export model {run['model']!r} as one ONNX graph: it is a weight-free "
                            f"{kind.name} model, run as built with no artefact, so nothing of it is an ONNX "
                            "graph. Export a recipe with an ONNX form of a backbone with weights")
    note = None
    source = run
    if recipe != run["recipe"]:
        sib = _sibling(db, run, recipe, fold)
        if sib is not None:
            note = f"recipe {recipe!r} taken from run {sib['id']} (same invocation as run {run_id})"
            source = sib
    folds = db.fold_results(int(source["id"]))
    row = folds[folds["fold"] == fold]
    if row.empty:
        have = sorted(int(f) for f in folds["fold"])
        raise SerbenchError(f"run {source['id']} has no fold {fold} (it has folds {have})")
    details = row["details"].iloc[0]
    if source["recipe"] == recipe:
        path = Path(details["artefact"])
        if (path / cache.META).is_file():
            art = cache.load(path)
        else:
            art = _rebuild(source, registry.load_recipe(recipe))
            if art.path != path:
                raise SerbenchError(f"the artefact of run {source['id']} fold {fold} ({path}) is gone from the "
                                    f"cache and rebuilding gives a different one ({art.path.name})")
        measured = True
    else:
        art = _rebuild(run, registry.load_recipe(recipe))
        note = (f"recipe {recipe!r} rebuilt for export: run {run_id} measured recipe {run['recipe']!r}; "
                f"the accuracy of {recipe!r} was NOT measured")
        measured = False
    head = heads_path(db, int(source["id"]), fold)
    if not head.is_file():
        raise SerbenchError(f"{head}: the trained head of run {source['id']} fold {fold} is missing "
                            "(`serbench run` keeps heads beside the store, in <store>.runs/)")
    if not art.method.onnx:  # what the recipe's method declares (serbench.artefacts.methods)
        onnx = [f"{b}/{m.name}" for b, ms in methods.backends().items() for m in ms.values() if m.onnx]
        raise SerbenchError(f"cannot export recipe {recipe!r} of model {run['model']!r} as one ONNX graph: its "
                            f"method {art.method.backend}/{art.method.name} builds a {art.format!r} artefact, not "
                            f"an ONNX graph. Export a recipe whose method has an ONNX form ({', '.join(onnx)})")
    return {"run": source, "asked_run": run_id, "recipe": recipe, "artefact": art, "head_path": head,
            "measured": measured, "note": note, "fold": fold, "details": details}


def heads_path(db: store.Store, run_id: int, fold: int) -> Path:
    """Where `serbench run` saved the fold's head: beside the store (``Store.run_files``)."""
    return db.run_files(run_id) / f"fold{fold}.pt"


def load_head(path: Path):
    """The saved head (eval mode: a fitted module of any head kind) and its classes."""
    return heads.restore(path)
