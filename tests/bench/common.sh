# shellcheck shell=bash
# Shell functions shared by run.sh, configs.sh and profile.sh (sourced, not run).

# A TCP port free on loopback right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ours_config DST PORT METRICS_PORT: tests/bench/ours-config.json with these ports.
ours_config() {
  python3 - "$(dirname "${BASH_SOURCE[0]}")/ours-config.json" "$1" "$2" "$3" <<'PY'
import json, sys
src, dst, port, mport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = json.load(open(src))
cfg["port"] = port
cfg["metrics"]["port"] = mport
json.dump(cfg, open(dst, "w"), indent=2)
PY
}

# The machine lines of a results file's "Machine" section.
machine_info() {
  echo "- cores (\`nproc\`): $(nproc)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "- kernel: $(uname -sr)"
  echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
}

# runs_and_numbers RESULTS_DIR PREFIX BENCH REPORT_ARGS...: the "Runs" section (each server's
# run notes) and the "Numbers" section (the report of the JSON records).
runs_and_numbers() {
  local results="$1" prefix="$2" bench="$3"
  shift 3
  echo "## Runs"
  echo
  for s in ours reference; do
    [ -s "$results/$prefix$s.meta.md" ] && { cat "$results/$prefix$s.meta.md"; echo; }
  done
  echo "## Numbers"
  echo
  if [ $# -gt 0 ]; then "$bench" report "$@"; else echo "(no records)"; fi
}
