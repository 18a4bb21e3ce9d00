#!/usr/bin/env bash
# The one command that passes all tests on a fresh machine (README: "Run all tests").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

tests/setup/install-deps.sh

# A one-off build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The operator's end-to-end tests need a real kube-apiserver (tests/control-plane). A fresh
# machine builds it once (about 5 to 8 minutes): do that in the background, alongside the cargo
# build, and wait for it before `cargo test`. A machine that built it before finishes at once.
cp_log="$(mktemp)"
trap 'rm -f "$cp_log"' EXIT
tests/control-plane/control-plane.sh build >"$cp_log" 2>&1 &
cp_pid=$!

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== fuzz targets compile (server/fuzz, without the libFuzzer C++ build)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/fuzz-check" \
  cargo check --manifest-path server/fuzz/Cargo.toml --locked --no-default-features --bins

log="$(mktemp)"
trap 'rm -f "$log" "$cp_log"' EXIT
status=0

echo "== control plane for the operator e2e tests"
if ! wait "$cp_pid"; then
  echo "tests/control-plane/control-plane.sh build failed:" >&2
  cat "$cp_log" >&2
  exit 1
fi
tail -n 1 "$cp_log"

echo "== cargo test"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee -a "$log"
((status |= PIPESTATUS[0]))
echo "== chart tests (Helm SDK, Kubernetes 1.33 and 1.37 schemas)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/chart 2>&1 | tee -a "$log"
((status |= PIPESTATUS[0]))
set -e

# One closing line for the whole run: cargo's per-binary result lines plus pytest's summary.
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^[0-9]+ (passed|failed).* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
