#!/usr/bin/env bash
# Benchmarks (`make benchmark`). Placeholder: no benchmark is defined yet.
# Results belong in benchmarks/output/ (ignored by git and by the collection build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "benchmark: no benchmarks defined yet (scripts/benchmark.sh is a placeholder)"
