#!/usr/bin/env bash
# Benchmarks (`make benchmark`): the pg_tviews emergency path against the runbook's SQL and a generic
# community.postgresql playbook (benchmarks/tviews/run.py). Needs the lab (lab.env).
# community.postgresql 4.2.0 is used for the benchmark only: extracted from the pinned ansible 12.3.0 wheel
# (PyPI) into build/benchmark-collections, never committed. BENCHMARK_ARGS: sizes, e.g. --tviews 1000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-.venv/bin/python}"
COLL=build/benchmark-collections
if [ ! -f "$COLL/ansible_collections/community/postgresql/MANIFEST.json" ]; then
    mkdir -p build/wheels "$COLL"
    [ -f build/wheels/ansible-12.3.0-py3-none-any.whl ] || \
        "$PY" -m pip download --no-deps 'ansible==12.3.0' -d build/wheels
    "$PY" - <<'PYEOF'
import zipfile
prefix = 'ansible_collections/community/postgresql/'
with zipfile.ZipFile('build/wheels/ansible-12.3.0-py3-none-any.whl') as wheel:
    wheel.extractall('build/benchmark-collections', [n for n in wheel.namelist() if n.startswith(prefix)])
PYEOF
fi
LAB_ENV="${LAB_DIR:-/var/lib/incident-response-lab}/lab.env"
[ -f "$LAB_ENV" ] || { echo "benchmark: $LAB_ENV not found: the lab must be up" >&2; exit 1; }
set -a; . "$LAB_ENV"; set +a
status=0
# shellcheck disable=SC2086 # BENCHMARK_ARGS holds several words on purpose
"$PY" benchmarks/tviews/run.py --generic-collections "$COLL" ${BENCHMARK_ARGS:-} || status=$?
# Services (issue 9): service_scale 2 -> 20 -> 2 against the Compose CLI, on a Compose project of its own
# (scalebench, never the lab's workers). Runs whatever the tviews status was; the script fails when either failed.
# shellcheck disable=SC2086 # SERVICES_BENCHMARK_ARGS holds several words on purpose
"$PY" benchmarks/services/scale_benchmark.py ${SERVICES_BENCHMARK_ARGS:-} || status=$?
exit "$status"
