#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, every Rust test (nextest), the Node tests that
# drive the real server with the official `phoenix` client, and the Python and JavaScript SDK
# suites (the latter also in Chromium). Needs cargo-nextest, Node 20, Python 3 with venv and
# Chromium; `.ci/run` installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo nextest run --workspace --locked --no-fail-fast

if [ -d tests/phoenix-js ]; then
  (cd tests/phoenix-js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" npm test)
fi

# The Python SDK: mypy --strict and pytest against the server binary built above.
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" sdks/python/scripts/test.sh

# The JavaScript SDK: type-check, bundle freshness, Node tests and Chromium tests (playwright-core)
# against the server binary built above.
(cd sdks/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" npm test)
