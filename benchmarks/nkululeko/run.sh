#!/usr/bin/env bash
# nkululeko on RAVDESS, see RESULTS.md. The venv is separate from serbench's:
#   python3 -m venv /work/nkvenv
#   /work/nkvenv/bin/pip install torch==2.13.0   # CPU wheel; install first, or a CUDA torch is pulled
#   /work/nkvenv/bin/pip install nkululeko==1.14.1
# usage: benchmarks/nkululeko/run.sh [--data DIR] [--work DIR] [--only 8c/loso24 ...]
set -euo pipefail
NKVENV="${NKVENV:-/work/nkvenv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$NKVENV/bin/python" "$HERE/run.py" "$@"
