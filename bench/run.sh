#!/usr/bin/env bash
# Runs the benchmark suite in one go: installs the peers if needed, builds release binaries,
# runs the scenarios with the servers pinned to core 0 and the load generator to core 1, and
# writes bench/results/latest.md, latest.json and PNG plots. Arguments go to
# `switchboard-bench run`, e.g. `bench/run.sh --quick` or `bench/run.sh --scenario s1,s3`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash bench/setup.sh
python3 -c 'import matplotlib' 2>/dev/null || pip install --quiet matplotlib
cargo build --release --locked -p switchboard -p switchboard-bench

out="${BENCH_OUT:-bench/results}"
taskset -c 1 target/release/switchboard-bench run --out "$out" "$@"
python3 bench/plot.py "$out/latest.json" "$out"
