#!/usr/bin/env bash
# The one benchmark command: builds, starts a server pinned to core 0, runs the standard suite
# with the load generator pinned to core 1, and writes tests/bench/RESULTS.md.
#
#   tests/bench/run.sh                 # our server (target/release/sockudo)
#   tests/bench/run.sh --reference     # the reference sockudo from crates.io
#   tests/bench/run.sh --both          # both, interleaved benchmark by benchmark
#   tests/bench/run.sh --quick ...     # small sizes, to check the harness (results/quick-*.jsonl)
#   tests/bench/run.sh --only fanout-1pps,http-publish ...
#   tests/bench/run.sh --report-only   # rewrite RESULTS.md from the records already there
#   tests/bench/run.sh --configs [--quick]  # per adapter configuration (local, redis, redis-cluster,
#                                      # nats), ours and the reference: cross-node latency and
#                                      # deliveries/s, delta bandwidth, cache/limiter latency;
#                                      # writes tests/bench/RESULTS-configs.md (see configs.sh)
#
# Each benchmark gets a fresh server process (so RSS baselines are clean), stopped by PID after.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bench_dir="$root/tests/bench"
results="$bench_dir/results"
logs="${CARGO_TARGET_DIR:-$root/target}/bench-logs"
# shellcheck source=tests/bench/common.sh
source "$bench_dir/common.sh"
ref_root="${SOCKUDO_REFERENCE_ROOT:-$HOME/.cache/sockudo-ref}"
ref_bin="${SOCKUDO_REFERENCE_BIN:-$ref_root/bin/sockudo}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bench="$target_dir/release/sockudo-bench"
ours_bin="$target_dir/release/sockudo"

servers=(ours)
quick=0
only=""
report_only=0
configs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reference) servers=(reference) ;;
    --ours) servers=(ours) ;;
    --both) servers=(ours reference) ;;
    --quick) quick=1 ;;
    --only) only="$2"; shift ;;
    --report-only) report_only=1 ;;
    --configs) configs=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$configs" = 1 ]; then
  if [ "$quick" = 1 ]; then exec "$bench_dir/configs.sh" --quick; else exec "$bench_dir/configs.sh"; fi
fi

# Two cores: server on 0, load generator on 1. With fewer cores, run unpinned (and say so).
if [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0)
  pin_client=(taskset -c 1)
  pinning="server on core 0, load generator on core 1 (taskset)"
else
  pin_server=()
  pin_client=()
  pinning="not pinned (fewer than 2 cores)"
fi

mkdir -p "$results" "$logs"
prefix=""
[ "$quick" = 1 ] && prefix="quick-"

[ "$report_only" = 1 ] && servers=()
echo "== building sockudo-bench (release)"
(cd "$root" && nice -n 19 cargo build --release -p sockudo-bench)

runnable=()
for s in "${servers[@]}"; do
  if [ "$s" = ours ]; then
    echo "== building our server (release)"
    # Work in progress on the server must not stop the reference half of --both.
    if ! (cd "$root" && nice -n 19 cargo build --release -p sockudo-server); then
      echo "!! our server does not build: skipping it" >&2
      continue
    fi
  elif [ ! -x "$ref_bin" ]; then
    echo "== building the reference server (cargo install sockudo; long on 2 cores)"
    # protoc and the well-known .proto files (metrics-exporter-tcp's build script needs both).
    if ! command -v protoc >/dev/null || [ ! -e /usr/include/google/protobuf/timestamp.proto ]; then
      apt-get update -qq && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev
    fi
    nice -n 19 cargo install sockudo --locked --root "$ref_root" ||
      nice -n 19 cargo install sockudo --root "$ref_root"
  fi
  runnable+=("$s")
done
if [ "$report_only" = 0 ]; then
  [ ${#runnable[@]} -gt 0 ] || { echo "run.sh: no server to benchmark" >&2; exit 1; }
  servers=("${runnable[@]}")
fi


server_pid=""
port=""

# start_server ours|reference NAME: starts a fresh server in a temp dir (so the reference finds no
# config/config.toml there) and waits until its port accepts connections.
start_server() {
  local which="$1" name="$2" dir mport
  port="$(free_port)"
  mport="$(free_port)"
  dir="$(mktemp -d)"
  local log="$logs/$which-$name.log"
  if [ "$which" = ours ]; then
    ours_config "$dir/config.json" "$port" "$mport"
    (
      cd "$dir"
      ulimit -Sn "$(ulimit -Hn)"
      exec "${pin_server[@]}" "$ours_bin" --config "$dir/config.json"
    ) >"$log" 2>&1 &
  else
    # The reference reads its settings from the environment (reference notes §6.5). The env-built
    # default app has every limit at 100 (even max_connections), so raise them.
    (
      cd "$dir"
      ulimit -Sn "$(ulimit -Hn)"
      export HOST=127.0.0.1 PORT="$port" METRICS_HOST=127.0.0.1 METRICS_PORT="$mport" \
        ADAPTER_DRIVER=local CACHE_DRIVER=memory QUEUE_DRIVER=memory APP_MANAGER_DRIVER=memory \
        RATE_LIMITER_ENABLED=false SOCKUDO_MAX_CONNECTIONS=20000 RUST_LOG=warn \
        SOCKUDO_DEFAULT_APP_ID=1234 SOCKUDO_DEFAULT_APP_KEY=app-key SOCKUDO_DEFAULT_APP_SECRET=app-secret \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
        SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
        SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=1000000 \
        SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB=64 \
        SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH=200
      exec "${pin_server[@]}" "$ref_bin"
    ) >"$log" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 1 300); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "server exited at start; log $log:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.5
      return 0
    fi
    sleep 0.1
  done
  echo "server did not listen on $port within 30 s; log $log" >&2
  stop_server
  return 1
}

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    # Graceful shutdown is not under test, and the reference sleeps its 10 s grace period:
    # TERM, then KILL after 2 s.
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT

# The standard suite (issue #2 targets): name, then sockudo-bench arguments.
if [ "$quick" = 0 ]; then
  suite=(
    "fanout-1pps|fanout -n 5000 --rate 1 --messages 30"
    "fanout-5k-deliveries|fanout -n 500 --rate 10 --messages 300"
    "fanout-ramp|fanout -n 5000 --ramp 1,2,5,10,20,30,40,60,80,100,150,200 --step-secs 6 --threshold-ms 500"
    "idle-connections|connections --steps 1000,10000,15000 --channels 1000"
    "channels-10k-1k|channels -n 10000 -c 1000 --ramp 100,200,500,1000,1500,2000,3000,3500,4000,4500,5000,6000,7000,8000,9000,10000,11000,12000,13000,14000,15000,16000 --step-secs 5 --threshold-ms 20"
    "http-publish|http-publish -k 50 -d 10"
    "send-floor|send-floor -n 9000 --rates 40000,80000,120000,0 --step-secs 5"
  )
else
  suite=(
    "fanout-1pps|fanout -n 100 --rate 1 --messages 5"
    "fanout-5k-deliveries|fanout -n 100 --rate 10 --messages 30"
    "fanout-ramp|fanout -n 100 --ramp 1,10,50 --step-secs 3 --threshold-ms 500"
    "idle-connections|connections --steps 100,500,1000 --channels 100 --settle-secs 1"
    "channels-10k-1k|channels -n 1000 -c 100 --ramp 50,200 --step-secs 3 --threshold-ms 20"
    "http-publish|http-publish -k 10 -d 3"
    "send-floor|send-floor -n 500 --rates 20000,0 --step-secs 1"
  )
fi

run_machine_info() {
  machine_info
  echo "- open-files limit (hard): $(ulimit -Hn)"
}

records() { echo "$results/$prefix$1.jsonl"; }
run_notes() { echo "$results/$prefix$1.meta.md"; }

# Each server's run notes: a header now, then each benchmark's command as it runs.
for s in "${servers[@]}"; do
  out="$(records "$s")"
  meta="$(run_notes "$s")"
  # A partial run (--only) adds to the records; the report keeps the last record of each name.
  [ -z "$only" ] && : >"$out"
  if [ "$s" = ours ]; then bin="$ours_bin"; else bin="$ref_bin"; fi
  # A full run replaces the run notes; a partial one (--only) adds a dated section to them.
  [ -z "$only" ] && : >"$meta"
  {
    if [ -z "$only" ]; then echo "#### $s"; else echo "#### $s: re-run of $only"; fi
    echo
    echo "- run: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$s" = reference ]; then
      echo "- binary: \`$bin\` ($(grep -o '"sockudo [0-9.]*' "$ref_root/.crates.toml" 2>/dev/null | tr -d '"' || echo 'sockudo, version unknown') from crates.io)"
    else
      echo "- binary: \`$bin\` (git $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && [ -n "$(git status --porcelain -- server)" ] && echo ' + uncommitted changes in server/'))"
    fi
    echo "- pinning: $pinning"
    [ ${#servers[@]} -gt 1 ] && echo "- interleaved: each benchmark ran on every server before the next benchmark started"
    echo "- commands (\`\$P\` = the fresh server's port, \`\$PID\` its process id), each after the UTC time it started:"
    echo
    echo '```sh'
  } >>"$meta"
done

# Benchmark-major: with --both, the two servers run each benchmark minutes apart, so a machine
# whose speed drifts (a shared VM's can move by a third within an hour) moves both alike.
for entry in "${suite[@]}"; do
  name="${entry%%|*}"
  args="${entry#*|}"
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  for s in "${servers[@]}"; do
    out="$(records "$s")"
    meta="$(run_notes "$s")"
    if [ "$name" = send-floor ]; then
      # No server involved: the machine's floor, measured once (with our run).
      [ "$s" = ours ] || continue
      echo
      echo "== [machine] $name"
      echo "# $(date -u '+%H:%M:%S')" >>"$meta"
      # shellcheck disable=SC2086 # args is a word list on purpose
      "$bench" --server-name "$s" --label "$name" --json "$out" $args || echo "!! $name failed"
      echo "$bench --server-name $s --label $name --json $(basename "$out") $args" >>"$meta"
      continue
    fi
    echo
    echo "== [$s] $name"
    start_server "$s" "$name" || { echo "skipping $name on $s"; continue; }
    echo "# $(date -u '+%H:%M:%S')" >>"$meta"
    # shellcheck disable=SC2086 # args is a word list on purpose
    "${pin_client[@]}" "$bench" --port "$port" --server-pid "$server_pid" --server-name "$s" \
      --label "$name" --json "$out" $args || echo "!! $name failed on $s"
    echo "${pin_client[*]} $bench --port \$P --server-pid \$PID --server-name $s --label $name --json $(basename "$out") $args" >>"$meta"
    stop_server
  done
done
for s in "${servers[@]}"; do
  { echo '```'; echo; } >>"$(run_notes "$s")"
done

# RESULTS.md from whatever records exist for each server (the last run of each wins).
report_args=()
[ -s "$results/${prefix}ours.jsonl" ] && report_args+=(--ours "$results/${prefix}ours.jsonl")
[ -s "$results/${prefix}reference.jsonl" ] && report_args+=(--reference "$results/${prefix}reference.jsonl")
if [ "$quick" = 1 ]; then md="$results/RESULTS-quick.md"; else md="$bench_dir/RESULTS.md"; fi
{
  echo "# Benchmark results: our server vs the reference sockudo"
  echo
  echo "Generated by \`tests/bench/run.sh\` ($( [ "$quick" = 1 ] && echo 'quick sizes, harness check only' || echo 'standard suite')) on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Ratios are ours / reference; the \"better\" column says which direction wins."
  echo
  echo "## Machine"
  echo
  run_machine_info
  echo
  echo "## Set-up"
  echo
  echo "- Loopback only. Each benchmark starts a fresh server process ($pinning), then stops it by PID."
  echo "- Load generator: \`sockudo-bench\` (tests/bench), one tokio current-thread runtime: all WebSockets"
  echo "  and the HTTP publisher on one core. Its own CPU is reported per step; near 100% means the"
  echo "  generator, not the server, limited the result."
  echo "- Server CPU = utime+stime from /proc/PID/stat; RSS = VmRSS from /proc/PID/status."
  echo "- Ours: \`target/release/sockudo --config\` tests/bench/ours-config.json with fresh ports"
  echo "  (local adapter, memory cache, rate limiter off, app 1234/app-key/app-secret, limits raised)."
  echo "- Reference: sockudo from crates.io, configured by environment: local adapter, memory"
  echo "  cache/queue, RATE_LIMITER_ENABLED=false, SOCKUDO_DEFAULT_APP_* = 1234/app-key/app-secret"
  echo "  with max connections 100000, SOCKUDO_MAX_CONNECTIONS=20000; other settings default."
  echo "- The machine's 2 cores may be shared with other work (load averages are recorded per run"
  echo "  below). Background load moves results a lot: compare the two servers only on runs made"
  echo "  under similar load, and re-run a benchmark (\`--only NAME\`) before trusting one outlier."
  echo
  runs_and_numbers "$results" "$prefix" "$bench" "${report_args[@]}"
} >"$md"
echo
echo "== wrote $md"
