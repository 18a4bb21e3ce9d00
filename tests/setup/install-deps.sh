#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian bookworm machine, and nothing twice:
# the backing services from Debian's packages, the real Pusher clients from npm, the Python SDK
# and validators from PyPI. Safe to re-run; each step is skipped when already satisfied.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v node >/dev/null || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A mirror occasionally misses a .deb on the first try; the second attempt fetches it.
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null ||
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Real clients: pusher-js (WebSocket) and the official pusher HTTP SDK, pinned by package-lock.
if [ -f "$root/tests/js/package.json" ]; then
  if [ ! -d "$root/tests/js/node_modules" ] || [ "$root/tests/js/package-lock.json" -nt "$root/tests/js/node_modules" ]; then
    echo "install-deps: npm ci in tests/js"
    (cd "$root/tests/js" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
  fi
fi

# Python: the official pusher SDK, Helm SDK and Kubernetes schema validator, in a venv outside git.
if [ -f "$root/tests/py/requirements.txt" ]; then
  venv="$root/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  stamp="$venv/.requirements"
  if ! cmp -s "$root/tests/py/requirements.txt" "$stamp"; then
    echo "install-deps: pip install -r tests/py/requirements.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/py/requirements.txt"
    cp "$root/tests/py/requirements.txt" "$stamp"
  fi
fi
