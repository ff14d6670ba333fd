#!/usr/bin/env bash
# Tests the Python SDK: a venv in sdks/python/.venv, the package with its test extras,
# mypy --strict, then pytest against the real server binary ($SWITCHBOARD_BIN, default
# target/debug/switchboard; build it with `cargo build -p switchboard`).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/../.." && pwd)"
export SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$repo/target/debug/switchboard}"
[ -x "$SWITCHBOARD_BIN" ] || { echo "no server binary at $SWITCHBOARD_BIN: run cargo build -p switchboard" >&2; exit 1; }

cd "$here"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check ".[test]"
.venv/bin/mypy --strict
.venv/bin/pytest -q "$@"
