"""``serbench run``: one model, one protocol, one or more compression recipes, stored with provenance.

The flow (each step is another module; this one only wires them):
corpora (:mod:`serbench.sources`) -> audited folds (:mod:`serbench.protocols`) -> per fold, a head
trained on the *training* split and selected on the *validation* split (probe: on cached fp32
embeddings, :mod:`serbench.train`; fine-tune: the backbone too, :mod:`serbench.finetune`) -> for each
recipe, the (fine-tuned or pretrained) backbone compressed by it (:mod:`serbench.artefacts`; static
recipes calibrated on that fold's training utterances only; a weight-free model's encoder as built) embeds the *test* utterances, and the
head scores them (:mod:`serbench.metrics`) -> one store run per recipe (:mod:`serbench.store`).

Runs are per recipe so that every row of the store is one (model, recipe, protocol) point on a
Pareto plot. A fold's head is trained once and shared by the recipes; on ``--resume`` a fold is
redone only for the recipes that lack it, and retraining is seeded, so the numbers are the ones an
uninterrupted run gives.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from serbench import (atomic, audio, backbones, corpora, embed, heads, labels, metrics, options, progress, protocols,
                      provenance, registry, sources, splits, stats, store, train)
from serbench.artefacts import cache, encoders
from serbench.entries import RecipeEntry
from serbench.errors import SerbenchError
from serbench.finetune import FinetuneConfig, finetune

MODES = options.MODES


@dataclass
class RunSpec:
    model: str
    protocol: str
    recipes: tuple[str, ...] = ("fp32",)
    mode: str = "probe"
    weights: str = "hub"
    corpus: str | None = None            # apply a within-corpus protocol to another corpus
    label_maps: dict = field(default_factory=dict)   # corpus -> label map, over the protocol's
    head: str | None = None              # registry head; None: the model entry's, else "mlp"
    data: dict = field(default_factory=dict)
    synthetic: bool = False
    synthetic_size: str = "small"
    seed: int | None = None              # None: the protocol file's seed
    calibration_clips: int = 32
    measure: bool = True
    n_resamples: int = stats.N_RESAMPLES  # speaker-bootstrap draws for every interval
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class RecipeResult:
    run_id: int
    recipe: str
    summary: dict
    measurements: dict


class Runner:
    def __init__(self, spec: RunSpec, store_path: str | Path | None = None, resume: bool = False,
                 progress: bool = True, log=print, keep_finished: bool = False):
        if spec.mode not in MODES:
            raise SerbenchError(f"--mode must be one of {', '.join(MODES)}, not {spec.mode!r}")
        if not spec.recipes:
            raise SerbenchError("no recipe given (e.g. --recipe fp32,dynamic-int8,static-int8)")
        twice = sorted({r for r in spec.recipes if spec.recipes.count(r) > 1})
        if twice:   # one run per recipe: a second would share the first's key and orphan it
            raise SerbenchError(f"recipe(s) {', '.join(twice)} given twice; give each once")
        self.spec, self.resume, self.progress, self.log = spec, resume, progress, log
        self.keep_finished = keep_finished   # with resume: a finished run of this configuration is kept, not redone
        self.notes: list[str] = []   # what the user must see even with --quiet/--json (skips, resume)
        self.entry = registry.load_model(spec.model)
        backbones.check_weights(self.entry, spec.weights)  # arguments are checked before any corpus is touched
        self.recipes = [registry.load_recipe(r) for r in spec.recipes]
        for recipe in self.recipes:
            backbones.check_recipe(self.entry, recipe)
        # the uncompressed reference (heads are trained on its embeddings): by method, not by name
        self.fp32 = next((r for r in self.recipes if r.is_reference), None) or registry.reference_recipe()
        if self.entry.weight_free and spec.mode == "finetune":
            raise SerbenchError(f"model {spec.model!r} has no weights to fine-tune; use --mode probe")
        proto = protocols.load(spec.protocol)
        proto = proto.with_corpus(spec.corpus) if spec.corpus else proto
        self.protocol = with_label_maps(proto, spec.label_maps)
        self.seed = self.protocol.seed if spec.seed is None else int(spec.seed)
        self.head = heads.load(spec.head or self.entry.head or heads.DEFAULT)
        if spec.mode == "finetune" and self.head.kind != "mlp":
            raise SerbenchError(f"--mode finetune trains its own MLP head together with the backbone; "
                                f"--head {self.head.name} ({self.head.kind}) applies to --mode probe")
        self.store_path = store_path

    # -- set-up -----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        s = self.spec
        self.sources = sources.resolve(self.protocol.corpora, s.data, s.synthetic, s.synthetic_size,
                                        seed=0, progress=self.progress)
        maps = {c: self.protocol.label_map(c) for c in self.protocol.corpora}
        self.manifests = sources.manifests(self.sources, maps, progress=self.progress)
        for name, m in self.manifests.items():
            self.notes += [f"{name}: {w}" for w in m.warnings]
            dropped = corpora.dropped_text(corpora.recipe_for(name, self.sources[name].path), m)
            if dropped:
                self.notes.append(dropped)
            if m.skipped:
                recipe = corpora.recipe_for(name, self.sources[name].path)
                self.notes.append(f"{name}: {len(m.skipped)} file(s) skipped, not scored (see `serbench corpus "
                                  f"{recipe} {self.sources[name].path}` for each file and reason)")
        self.folds = self.protocol.folds(self.manifests, seed=self.seed)
        self.table = splits.utterance_table(self.manifests)
        paths_by_key = {splits.qualify(n, u): p for n, m in self.manifests.items()
                        for u, p in zip(m.frame["utt_id"], m.frame["path"])}
        self.table["path"] = [paths_by_key[k] for k in self.table.index]
        classes = {m.classes for m in self.manifests.values()}
        if len(classes) != 1:
            raise SerbenchError(f"the protocol's corpora disagree on classes: {sorted(classes)}; "
                                "give them label maps with the same classes")
        self.classes = list(classes.pop())
        for fold in self.folds:   # a one-class problem, or a class absent from training: refused before any work
            train.check_classes(self.classes, {"training": self._labels(fold.train), "validation": self._labels(fold.val),
                                               "test": self._labels(fold.test)}, f"fold {fold.index}")
        self.model, self.weights = backbones.build(self.entry, s.weights)
        self.preprocess = audio.Preprocess(sample_rate=self.entry.sample_rate, **self.entry.input)
        for fold in self.folds:
            self.log(f"{fold.label}: train {len(fold.train)}, val {len(fold.val)}, "
                     f"test {len(fold.test)}; speakers shared train/test: {fold.shared_speakers()}")

    @property
    def head_name(self) -> str:
        return self.head.name if self.spec.mode == "probe" else "mlp (fine-tuned)"

    @property
    def label_maps(self) -> dict[str, str]:
        """The label map each corpus was read with (after the protocol's and --label-map choices)."""
        return {n: m.label_map for n, m in self.manifests.items()}

    def _config(self, recipe: RecipeEntry) -> dict:
        """Everything that determines a recipe-run's numbers: its resume key and its record."""
        s = self.spec
        return {
            "synthetic": all(src.synthetic for src in self.sources.values()),
            "weights_source": self.weights,
            "weights": backbones.describe(self.weights),
            "model_entry": self.entry.content,
            "recipe_entry": recipe.content,
            "protocol": self.protocol.config(),
            "protocol_text": self.protocol.text,
            "mode": s.mode,
            "seed": self.seed,
            "head": self.head.record() if s.mode == "probe" else {"name": "mlp", "kind": "mlp",
                                                                  "options": "fine-tuned with the backbone"},
            "classes": self.classes,
            "data": {n: {"path": str(src.path), "origin": src.origin, "synthetic": src.synthetic,
                         "manifest_hash": self.manifests[n].content_hash(),
                         "label_map": self.manifests[n].label_map, "utterances": len(self.manifests[n]),
                         "skipped": [{"path": k.path, "reason": k.reason} for k in self.manifests[n].skipped]}
                     for n, src in self.sources.items()},
            "preprocess": self.preprocess.config(),
            "trainer": None if s.mode == "probe" else self._finetune_config().to_dict(),
            "calibration_clips": s.calibration_clips,
        }

    def _open_runs(self, db: store.Store) -> dict[str, int]:
        ids = {}
        for recipe in self.recipes:
            config = self._config(recipe)
            key = dict(model=self.entry.name, recipe=recipe.name, protocol=self.protocol.name,
                       mode=self.spec.mode, config=config)
            kept = db.find_finished(**key) if self.resume and self.keep_finished else None
            if kept is not None:
                ids[recipe.name] = kept   # a resumed sweep keeps what it finished
                continue
            run_id = db.find_unfinished(**key) if self.resume else None
            if self.resume and run_id is None:
                self.notes.append(f"--resume: no unfinished {recipe.name} run with this configuration in "
                                  f"{db.path}; starting a new run")
            if run_id is None:
                run_id = db.create_run(**key, provenance=provenance.provenance(weights=self.weights),
                                       invocation=self.invocation)
            else:
                db.resume_run(run_id, provenance.provenance(weights=self.weights))
                self.log(f"resuming run {run_id} ({recipe.name}): folds done {db.finished_folds(run_id)}")
            ids[recipe.name] = run_id
        return ids

    # -- the work ---------------------------------------------------------------------------------

    def run(self) -> list[RecipeResult]:
        """Prepare, open the runs, do every unfinished fold, finish: in this process. A sweep
        (:mod:`serbench.sweeps`) calls the same steps, with the folds as tasks elsewhere."""
        with store.Store(self.store_path) as db:
            run_ids = self.open(db)
            try:
                for fold, pending in self.pending(db, run_ids):
                    self.write(db, run_ids, self.fold_records(fold, pending))
                return self.finish(db, run_ids)
            except BaseException as exc:
                self.fail(db, run_ids, exc)
                raise

    def open(self, db: store.Store) -> dict[str, int]:
        """Resolve the corpora and folds, and open (or, with ``resume``, find) one store run per
        recipe: ``{recipe: run_id}``."""
        self.invocation = uuid.uuid4().hex   # groups this invocation's runs in the store
        self._prepare()
        return self._open_runs(db)

    def pending(self, db: store.Store, run_ids: dict[str, int]) -> list[tuple]:
        """``(fold, recipes that lack it)`` for every fold some recipe has not finished."""
        out = []
        for fold in self.folds:
            todo = [r for r in self.recipes if fold.index not in db.finished_folds(run_ids[r.name])]
            if todo:
                out.append((fold, todo))
        return out

    def finish(self, db: store.Store, run_ids: dict[str, int]) -> list[RecipeResult]:
        """Statistics over the pooled folds, paired comparison with the reference, measurements;
        the runs marked finished."""
        results = []
        preds = {r.name: db.predictions(run_ids[r.name]) for r in self.recipes}
        reference = next((r for r in self.recipes if r.is_reference), None)
        for recipe in self.recipes:
            rid = run_ids[recipe.name]
            folds = db.fold_results(rid)
            summary = metrics.aggregate(list(folds["metrics"]))
            summary["audit"] = {"shared_speakers_train_test": [
                a["shared_speakers"]["train-test"]["count"] for a in folds["audit"]]}
            summary.update(self._statistics(preds[recipe.name]))
            if reference is not None and recipe is not reference:
                summary["paired"] = {"reference_run": run_ids[reference.name],
                                     "reference_recipe": reference.name,
                                     **self._paired(preds[reference.name], preds[recipe.name])}
            measured = self._measure(db, rid, recipe)
            db.finish_run(rid, summary, n_folds=len(self.folds))
            results.append(RecipeResult(rid, recipe.name, summary, measured))
        return results

    @staticmethod
    def fail(db: store.Store, run_ids: dict[str, int], exc: BaseException) -> None:
        """Mark every unfinished run of this invocation failed (what ``--resume`` continues); on
        Ctrl-C they are not failed but noted as interrupted (:meth:`~serbench.store.Store.interrupt_run`)."""
        for rid in run_ids.values():
            if db.status(rid) != "finished":
                if isinstance(exc, KeyboardInterrupt):
                    db.interrupt_run(rid)
                else:
                    db.fail_run(rid, f"{type(exc).__name__}: {exc}")

    # -- statistics (serbench.stats): what is uncertain, and is a difference real ----------------

    def _speakers(self, utt_ids) -> np.ndarray:
        return self.table.loc[list(utt_ids), "speaker"].to_numpy()

    def _statistics(self, preds) -> dict:
        """Speaker-clustered intervals over the pooled test predictions of all folds, and UA per
        test speaker."""
        y, p, spk = preds["y_true"], preds["y_pred"], self._speakers(preds["utt_id"])
        per = stats.per_cluster(y, p, spk, self.classes)
        return {"ci": stats.cluster_bootstrap(y, p, spk, self.classes, self.spec.n_resamples, seed=self.seed),
                "per_speaker": per.to_dict("records")}

    def _paired(self, ref, new) -> dict:
        """This recipe against the reference (fp32) recipe of the same invocation, utterance by
        utterance on the same folds and heads."""
        both = ref.merge(new, on=["fold", "utt_id"], suffixes=("_ref", "_new"), validate="one_to_one")
        if len(both) != len(ref) or len(both) != len(new):
            raise SerbenchError("the reference and compressed runs scored different test utterances")
        y, a, b = both["y_true_ref"], both["y_pred_ref"], both["y_pred_new"]
        spk = self._speakers(both["utt_id"])
        rec_a, rec_b = (metrics.scores(y, x, self.classes)["recall"] for x in (a, b))
        return {**stats.paired_bootstrap(y, a, b, spk, self.classes, self.spec.n_resamples, seed=self.seed),
                "mcnemar": stats.mcnemar(y, a, b), "agreement": stats.agreement(a, b),
                "recall_change": {c: None if rec_a[c] is None else rec_b[c] - rec_a[c] for c in self.classes}}

    def _files(self, keys) -> list[str]:
        return self.table.loc[list(keys), "path"].tolist()

    def _labels(self, keys) -> list[str]:
        return self.table.loc[list(keys), "label"].tolist()

    def _embed(self, keys, encoder, encoder_key: str, desc: str) -> np.ndarray:
        X, _ = embed.embed_files(self._files(keys), encoder, encoder_key, self.preprocess, desc=desc,
                                 progress=self.progress)
        return X

    def _waves(self, keys) -> list[np.ndarray]:
        """Each utterance's speech segment, exactly as the encoders see it during evaluation."""
        return [embed.speech_segment(f, self.preprocess) for f in self._files(keys)]

    def _calibration(self, fold) -> tuple[list[np.ndarray], list[str]]:
        """Up to ``calibration_clips`` training utterances of this fold (seeded): never val/test."""
        rng = np.random.default_rng([self.seed, fold.index, 17])
        n = min(self.spec.calibration_clips, len(fold.train))
        keys = sorted(rng.choice(np.array(fold.train, dtype=object), size=n, replace=False).tolist())
        return self._waves(keys), keys

    def _encoder(self, recipe, fold, backbone):
        """``(cache key, encoder, artefact)`` embedding for ``recipe``: the artefact of ``backbone``
        (a ``(model, provenance)`` pair) compressed by it, calibrated recipes on this fold's training
        utterances; for a weight-free model its encoder as built, and no artefact (nothing to compress)."""
        if self.entry.weight_free:
            ident = json.dumps({"model": self.entry.content, "weights": self.weights}, sort_keys=True, default=str)
            key = f"{self.entry.name}--{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
            return key, backbones.encoder(self.entry, self.model), None
        art = self.artefact(recipe, fold, backbone)
        enc = encoders.open_encoder(art)
        device = getattr(enc, "device", "cpu")   # embeddings made on a GPU are cached apart from CPU ones
        return art.path.name + ("" if device == "cpu" else f"@{device}"), enc, art

    def artefact(self, recipe, fold, backbone=None):
        """``recipe``'s artefact of ``backbone`` (default: the model as built), calibrated recipes on
        ``fold``'s training utterances; built once (:mod:`serbench.artefacts.cache`)."""
        calib, ids = self._calibration(fold) if recipe.calibration else (None, None)
        return cache.build(self.entry, recipe, backbone or (self.model, self.weights), calib, ids)

    def fit_probe(self, fold) -> tuple:
        """``(head, details, hardware)``: the fold's probe head, trained on the reference's embeddings
        of the training split and chosen on the validation split (what every recipe's test
        embeddings are scored with; ``serbench tune --metric ua`` scores validation with it)."""
        key32, enc32, _ = self._encoder(self.fp32, fold, (self.model, self.weights))
        hardware = {"train_val_embeddings": provenance.hardware(getattr(enc32, "device", "cpu"))}
        Xt = self._embed(fold.train, enc32, key32, f"fold {fold.index} embed train")
        Xv = self._embed(fold.val, enc32, key32, f"fold {fold.index} embed val")
        fitted = heads.fit(self.head, Xt, self._labels(fold.train), Xv, self._labels(fold.val), self.classes,
                           seed=self.seed)
        return fitted.model, fitted.summary, hardware

    def fold_records(self, fold, pending) -> list[dict]:
        """One fold for the ``pending`` recipes: the head trained (on the training split, chosen on
        validation) and each recipe's test predictions, as plain data (:meth:`write` stores them).
        Touches no store, so it can run anywhere (a sweep's fold task); caches it may share."""
        s = self.spec
        yt, yv = self._labels(fold.train), self._labels(fold.val)
        if s.mode == "probe":
            head, details, hardware = self.fit_probe(fold)
            backbone = (self.model, self.weights)
        else:
            ft = finetune(copy.deepcopy(self.model), self._waves(fold.train), yt, self._waves(fold.val), yv,
                          self.classes, self._finetune_config(), entry=self.entry,
                          progress=lambda e, r: self.log(f"fold {fold.index} epoch {e}: val UA {r['val_ua']:.3f}"))
            head, details = ft.head, ft.summary()
            hardware = {"finetune": provenance.hardware(ft.device)}
            prov = {"kind": "finetuned", "base": self.weights, "protocol": self.protocol.name,
                    "fold": fold.index, "seed": self.seed, "sha256": _state_hash(ft.backbone)}
            backbone = (ft.backbone, prov)
        head_bytes = heads.dumps(head, self.classes, self.head.kind)
        y_true = self._labels(fold.test)
        records = []
        for recipe in pending:
            key, enc, art = self._encoder(recipe, fold, backbone)
            Xtest = self._embed(fold.test, enc, key, f"fold {fold.index} {recipe.name} test")
            pred, proba = train.predict(head, Xtest)
            y_pred = [self.classes[i] for i in pred]
            records.append({
                "recipe": recipe.name, "fold": fold.index, "name": fold.name, "head": head_bytes,
                "metrics": metrics.scores(y_true, y_pred, self.classes), "audit": fold.audit,
                "utt_ids": list(fold.test), "y_true": y_true, "y_pred": y_pred, "probs": proba,
                "speakers": self._speakers(fold.test),
                "details": {**details, "artefact": None if art is None else str(art.path),
                            "hardware": {**hardware, "test_embeddings": provenance.hardware(getattr(enc, "device", "cpu"))},
                            "calibration_ids": [] if art is None else art.provenance.get("calibration_ids", [])}})
            self.log(f"fold {fold.index} {recipe.name}: UA {metrics.ua(y_true, y_pred, self.classes):.3f}")
        return records

    def write(self, db: store.Store, run_ids: dict[str, int], records: list[dict]) -> None:
        """Store :meth:`fold_records`' output: the fold's head beside each run, its predictions
        and metrics in the database. The one writer of a run's files."""
        for r in records:
            rid = run_ids[r["recipe"]]
            folder = db.run_files(rid)
            atomic.makedirs(folder, "the folder of the run's trained heads")
            heads.save(r["head"], folder / f"fold{r['fold']}.pt")
            atomic.write_bytes(folder / "classes.json", json.dumps(list(self.classes)),
                               what="classes of the trained heads")
            db.write_fold(rid, r["fold"], metrics=r["metrics"], audit=r["audit"], utt_ids=r["utt_ids"],
                          y_true=r["y_true"], y_pred=r["y_pred"], probs=r["probs"], name=r["name"],
                          speakers=r["speakers"], details=r["details"])

    def _finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(**{**self.spec.finetune.to_dict(), "seed": self.seed})

    def _measure(self, db: store.Store, run_id: int, recipe) -> dict:
        """Size, latency, memory, energy and fidelity of the recipe's fold-0 artefact (measured once)."""
        have = db.measurements(run_id)
        if len(have):
            return dict(zip(have["key"], have["value"]))
        fold0 = db.fold_results(run_id)["details"].iloc[0]
        art = None if self.entry.weight_free else cache.load(fold0["artefact"])  # weight-free: none, 0 MB
        values = {"size_mb": 0.0 if art is None else art.size_mb, "artefact": None if art is None else str(art.path)}
        if self.spec.measure:
            from serbench import measure  # lazy: codecarbon and friends are slow to import

            # the step says when it starts, how long it has run and when it ends (progress on)
            with progress.step(f"measuring {recipe.name}: latency, peak memory, energy, fidelity "
                               "(--no-measure skips it)"):
                values.update(measure.for_run(self.entry, recipe, art, self.weights, reference=self.fp32))
        db.add_measurements(run_id, values)
        return values


def _state_hash(module: torch.nn.Module) -> str:
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in module.state_dict().items()}, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def with_label_maps(protocol: protocols.Protocol, maps: dict[str, str]) -> protocols.Protocol:
    """``protocol`` with ``maps`` (corpus -> label map, e.g. from ``--label-map``) over its own."""
    for corpus, name in maps.items():
        if corpus not in protocol.corpora:
            raise SerbenchError(f"--label-map {corpus}={name}: protocol {protocol.name} has no corpus "
                                f"{corpus!r} (its corpora: {', '.join(protocol.corpora)})")
        labels.load(name)  # an unknown map is an error naming the known ones
    return dataclasses.replace(protocol, label_maps={**protocol.label_maps, **maps}) if maps else protocol
