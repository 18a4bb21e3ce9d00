#!/usr/bin/env bash
# The per-configuration performance record (issues #3, #4, #9): `tests/bench/run.sh --configs`
# runs this. For each adapter configuration (local, redis, redis-cluster, nats) it starts the
# backend as real local processes (redis-server, a 3-master Redis Cluster made with
# `redis-cli --cluster create`, nats-server with JetStream), then two server nodes, for our server
# and for the reference sockudo (built with its redis, redis-cluster and nats features), and
# measures with sockudo-bench:
#   - cross-node latency p50/p99 at a steady rate, and the max deliveries/s at p99 <= 100 ms
#     (subscribers on node A, publishes on node B; `local` is one node: the same-node baseline);
#   - delta bandwidth saved (delta on vs off, ticker stream, decoded and verified);
# then the cache / rate-limiter added latency per driver (server/examples/cache_limiter_bench.rs).
# Writes tests/bench/RESULTS-configs.md (records: tests/bench/results/configs-*.jsonl).
#
#   tests/bench/run.sh --configs            # everything (about 25 minutes on 2 cores, when idle)
#   tests/bench/run.sh --configs --quick    # small sizes, harness check (results/quick-configs-*)
#   CONFIGS="redis nats" SERVERS="ours" tests/bench/run.sh --configs   # a subset
#   NOISY="load from other builds" tests/bench/run.sh --configs        # marks the record as noisy
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bench_dir="$root/tests/bench"
results="$bench_dir/results"
# shellcheck source=tests/bench/common.sh
source "$bench_dir/common.sh"
logs="${CARGO_TARGET_DIR:-$root/target}/bench-logs"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bench="$target_dir/release/sockudo-bench"
ours_bin="$target_dir/release/sockudo"
# The reference with the adapters under test (the crates.io default features have none of them).
ref_root="${SOCKUDO_REFERENCE_ADAPTERS_ROOT:-$HOME/.cache/sockudo-ref-adapters}"
ref_bin="${SOCKUDO_REFERENCE_ADAPTERS_BIN:-$ref_root/bin/sockudo}"
ref_features="redis,redis-cluster,nats"

quick=0
[ "${1:-}" = --quick ] && quick=1
read -r -a configs <<<"${CONFIGS:-local redis redis-cluster nats}"
read -r -a servers <<<"${SERVERS:-ours reference}"
prefix="configs-"
[ "$quick" = 1 ] && prefix="quick-configs-"

if [ "$quick" = 0 ]; then
  latency_args="cross-node -n 1000 --rate 20 --messages 300"
  ramp_args="cross-node -n 1000 --ramp 10,20,50,100,200,300,400,600,800 --step-secs 5 --threshold-ms 100"
  delta_args="delta-bandwidth -k 5 -m 300 --rate 20"
else
  latency_args="cross-node -n 50 --rate 10 --messages 30"
  ramp_args="cross-node -n 50 --ramp 10,50 --step-secs 2 --threshold-ms 100"
  delta_args="delta-bandwidth -k 2 -m 40 --rate 20"
fi

for tool in redis-server redis-cli nats-server curl python3 taskset; do
  command -v "$tool" >/dev/null || {
    echo "configs: $tool is missing: run tests/setup/install-deps.sh" >&2
    exit 1
  }
done

if [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0)
  pin_client=(taskset -c 1)
  pinning="both server nodes and the backend on core 0, the load generator on core 1 (taskset)"
else
  pin_server=()
  pin_client=()
  pinning="not pinned (fewer than 2 cores)"
fi

mkdir -p "$results" "$logs"
echo "== building sockudo-bench and our server (release)"
(cd "$root" && nice -n 19 cargo build --release -p sockudo-bench -p sockudo-server --bin sockudo-bench --bin sockudo)
if [[ " ${servers[*]} " == *" reference "* ]] && [ ! -x "$ref_bin" ]; then
  echo "== building the reference server with features $ref_features (cargo install; long on 2 cores)"
  if ! command -v protoc >/dev/null || [ ! -e /usr/include/google/protobuf/timestamp.proto ]; then
    apt-get update -qq && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev
  fi
  nice -n 19 cargo install sockudo --version 5.2.0 --locked --features "$ref_features" --root "$ref_root"
fi


# A Redis Cluster node also listens on port + 10000 (its bus), so the port must be <= 55535 and
# both must be free.
cluster_port() {
  python3 -c '
import random, socket
for _ in range(1000):
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass'
}

# Every process this script starts, stopped by PID on exit.
pids=()
tmp="$(mktemp -d)"
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 143" TERM INT

stop_pids() {
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

wait_port() {
  local port="$1" what="$2"
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "configs: $what did not listen on $port within 30 s" >&2
  return 1
}

# Backend of one configuration: sets backend_pids and the addresses below.
redis_port=""
cluster_ports=()
nats_port=""
backend_pids=()
start_redis_at() {
  local port="$1" dir="$tmp/redis-$1"
  shift
  mkdir -p "$dir"
  "${pin_server[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" "$@" >"$logs/redis-$port.log" 2>&1 &
  pids+=($!)
  backend_pids+=($!)
  wait_port "$port" "redis-server"
}
start_backend() {
  backend_pids=()
  case "$1" in
    local) ;;
    redis)
      redis_port="$(free_port)"
      start_redis_at "$redis_port"
      ;;
    redis-cluster)
      cluster_ports=("$(cluster_port)" "$(cluster_port)" "$(cluster_port)")
      for p in "${cluster_ports[@]}"; do
        start_redis_at "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf"
      done
      redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
        --cluster-yes >"$logs/redis-cluster-create.log" 2>&1
      for _ in $(seq 1 100); do
        redis-cli -p "${cluster_ports[0]}" cluster info | grep -q 'cluster_state:ok' && break
        sleep 0.2
      done
      ;;
    nats)
      # Cache (both servers; the reference refuses a node-local cache when clustered).
      redis_port="$(free_port)"
      start_redis_at "$redis_port"
      nats_port="$(free_port)"
      mkdir -p "$tmp/nats"
      "${pin_server[@]}" nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats" \
        >"$logs/nats.log" 2>&1 &
      pids+=($!)
      backend_pids+=($!)
      wait_port "$nats_port" "nats-server"
      ;;
  esac
}

# Our server's config for one node of a configuration (ours-config.json + the adapter).
ours_config() {
  local config="$1" port="$2" mport="$3" node="$4" out="$5"
  python3 - "$bench_dir/ours-config.json" "$out" "$config" "$port" "$mport" "$node" \
    "$redis_port" "${cluster_ports[*]:-}" "$nats_port" <<'EOF'
import json, sys
src, dst, config, port, mport, node, redis_port, cluster_ports, nats_port = sys.argv[1:]
c = json.load(open(src))
c["port"] = int(port)
c["metrics"]["port"] = int(mport)
c["node_id"] = node
c["delta_compression"] = {"enabled": True, "cluster_coordination": config != "local"}
# Clustered: the cache is shared too, as the reference requires (seed configurations 3, 4, 5).
if config == "redis":
    c["adapter"] = {"driver": "redis"}
    c["cache"] = {"driver": "redis"}
    c["database"] = {"redis": {"host": "127.0.0.1", "port": int(redis_port)}}
elif config == "redis-cluster":
    c["adapter"] = {"driver": "redis-cluster"}
    c["cache"] = {"driver": "redis-cluster"}
    c["database"] = {"redis_cluster": {"nodes": [f"redis://127.0.0.1:{p}" for p in cluster_ports.split()]}}
elif config == "nats":
    c["adapter"] = {"driver": "nats"}
    c["cache"] = {"driver": "redis"}
    c["database"] = {"redis": {"host": "127.0.0.1", "port": int(redis_port)}}
    c["nats"] = {"servers": f"nats://127.0.0.1:{nats_port}"}
json.dump(c, open(dst, "w"), indent=2)
EOF
}

# Starts one node; prints its PID. The reference reads its settings from the environment (notes
# §6.5); the env-built default app has every limit at 100, so they are raised.
node_pid=""
start_node() {
  local which="$1" config="$2" port="$3" node="$4" mport dir
  mport="$(free_port)"
  dir="$tmp/$which-$config-$node"
  mkdir -p "$dir"
  local log="$logs/configs-$which-$config-$node.log"
  if [ "$which" = ours ]; then
    ours_config "$config" "$port" "$mport" "$node" "$dir/config.json"
    (
      cd "$dir"
      ulimit -Sn "$(ulimit -Hn)"
      exec "${pin_server[@]}" "$ours_bin" --config "$dir/config.json"
    ) >"$log" 2>&1 &
  else
    local adapter_env=(ADAPTER_DRIVER=local CACHE_DRIVER=memory)
    case "$config" in
      redis) adapter_env=(ADAPTER_DRIVER=redis CACHE_DRIVER=redis REDIS_URL="redis://127.0.0.1:$redis_port") ;;
      redis-cluster)
        adapter_env=(ADAPTER_DRIVER=redis-cluster CACHE_DRIVER=redis-cluster
          REDIS_CLUSTER_NODES="$(printf '127.0.0.1:%s,' "${cluster_ports[@]}" | sed 's/,$//')") ;;
      nats) adapter_env=(ADAPTER_DRIVER=nats CACHE_DRIVER=redis REDIS_URL="redis://127.0.0.1:$redis_port"
        NATS_SERVERS="nats://127.0.0.1:$nats_port") ;;
    esac
    (
      cd "$dir"
      ulimit -Sn "$(ulimit -Hn)"
      exec env HOST=127.0.0.1 PORT="$port" METRICS_HOST=127.0.0.1 METRICS_PORT="$mport" \
        INSTANCE_PROCESS_ID="$node" "${adapter_env[@]}" ADAPTER_FALLBACK_TO_LOCAL=false \
        QUEUE_DRIVER=memory APP_MANAGER_DRIVER=memory RATE_LIMITER_ENABLED=false \
        SOCKUDO_MAX_CONNECTIONS=20000 RUST_LOG=warn \
        SOCKUDO_DEFAULT_APP_ID=1234 SOCKUDO_DEFAULT_APP_KEY=app-key SOCKUDO_DEFAULT_APP_SECRET=app-secret \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
        SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
        SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=1000000 \
        SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB=64 \
        SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH=200 \
        "${pin_server[@]}" "$ref_bin"
    ) >"$log" 2>&1 &
  fi
  node_pid=$!
  pids+=("$node_pid")
  wait_port "$port" "$which $config $node (log $log)"
}

# Our nodes say when the adapter (and delta coordination) is up; the reference skips cross-node
# broadcasts until it has seen a peer heartbeat (every 10 s, notes §3), so it gets 12 s.
wait_cluster() {
  local which="$1" config="$2"
  shift 2
  [ "$config" = local ] && return 0
  if [ "$which" = reference ]; then
    sleep 12
    return 0
  fi
  for port in "$@"; do
    for _ in $(seq 1 200); do
      curl -sf "http://127.0.0.1:$port/ready" | grep -q '"status":"ok"' && break
      sleep 0.1
    done
  done
}

configs_machine_info() {
  machine_info
  echo "- backends: $(redis-server --version | cut -d' ' -f1-3), nats-server $(nats-server --version | awk '{print $2}')"
}

start_time=$(date +%s)
for s in "${servers[@]}"; do
  : >"$results/$prefix$s.jsonl"
  {
    echo "#### $s"
    echo
    echo "- run: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$s" = reference ]; then
      echo "- binary: \`$ref_bin\` (sockudo 5.2.0 from crates.io, features $ref_features)"
    else
      echo "- binary: \`$ours_bin\` (git $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && [ -n "$(git status --porcelain -- server)" ] && echo ' + uncommitted changes in server/'))"
    fi
    echo "- commands (\`\$A\` = node A's port, \`\$B\` node B's, \`\$PIDS\` both nodes' process ids):"
    echo
    echo '```sh'
  } >"$results/$prefix$s.meta.md"
done

# run_bench SERVER LABEL ARGS...: one sockudo-bench run against the nodes, recorded.
run_bench() {
  local s="$1" label="$2"
  shift 2
  local out="$results/$prefix$s.jsonl"
  echo
  echo "== [$s] $label (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  "${pin_client[@]}" "$bench" --port "$port_a" --publish-port "$port_b" --server-pid "$pid_list" \
    --server-name "$s" --label "$label" --json "$out" "$@" || echo "!! $label failed on $s"
  echo "# load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/$prefix$s.meta.md"
  echo "${pin_client[*]} $bench --port \$A --publish-port \$B --server-pid \$PIDS --server-name $s --label $label --json $(basename "$out") $*" \
    >>"$results/$prefix$s.meta.md"
}

for config in "${configs[@]}"; do
  echo
  echo "==== configuration: $config"
  start_backend "$config"
  for s in "${servers[@]}"; do
    port_a="$(free_port)"
    start_node "$s" "$config" "$port_a" "bench-a" || { echo "!! $s cannot run $config"; continue; }
    pid_a="$node_pid"
    if [ "$config" = local ]; then
      port_b="$port_a"
      pid_list="$pid_a"
    else
      port_b="$(free_port)"
      start_node "$s" "$config" "$port_b" "bench-b" || { stop_pids "$pid_a"; echo "!! $s cannot run $config"; continue; }
      pid_list="$pid_a,$node_pid"
    fi
    wait_cluster "$s" "$config" "$port_a" "$port_b"
    echo "# $config: $( [ "$config" = local ] && echo 'one node, publishes on it' || echo "two nodes, subscribers on A, publishes on B")" \
      >>"$results/$prefix$s.meta.md"
    # shellcheck disable=SC2086 # word lists on purpose
    run_bench "$s" "xnode-latency-$config" $latency_args
    # shellcheck disable=SC2086
    run_bench "$s" "xnode-ramp-$config" $ramp_args
    proto=7
    [ "$s" = reference ] && proto=2
    # shellcheck disable=SC2086
    run_bench "$s" "delta-$config" $delta_args --protocol "$proto"
    stop_pids ${pid_list//,/ }
  done
  stop_pids "${backend_pids[@]}"
done
for s in "${servers[@]}"; do
  { echo '```'; echo; } >>"$results/$prefix$s.meta.md"
done

echo
echo "==== cache and rate limiter: added latency per driver"
cache_out="$results/${prefix}cache-limiter.md"
cache_ops=5000
[ "$quick" = 1 ] && cache_ops=300
{
  echo "- run: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`BENCH_OPS=$cache_ops cargo run --release -p sockudo-server --example cache_limiter_bench\`"
  echo
  (cd "$root" && BENCH_OPS=$cache_ops nice -n 19 cargo run -q --release -p sockudo-server --example cache_limiter_bench) ||
    echo "(cache_limiter_bench failed; see above)"
  echo
  echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$cache_out" 2>"$logs/cache-limiter.err" || true
cat "$cache_out"

elapsed=$(( $(date +%s) - start_time ))
report_args=()
[ -s "$results/${prefix}ours.jsonl" ] && report_args+=(--ours "$results/${prefix}ours.jsonl")
[ -s "$results/${prefix}reference.jsonl" ] && report_args+=(--reference "$results/${prefix}reference.jsonl")
if [ "$quick" = 1 ]; then md="$results/RESULTS-configs-quick.md"; else md="$bench_dir/RESULTS-configs.md"; fi
{
  echo "# Per-configuration results: our server vs the reference sockudo"
  echo
  echo "Generated by \`tests/bench/run.sh --configs\`$( [ "$quick" = 1 ] && echo ' --quick (small sizes, harness check only)') on $(date -u '+%Y-%m-%d %H:%M UTC') in $((elapsed / 60)) min."
  echo "Ratios are ours / reference; the \"better\" column says which direction wins."
  if [ -n "${NOISY:-}" ]; then
    echo
    echo "**Noisy run: $NOISY.** Load averages are recorded per benchmark below; these numbers prove"
    echo "the harness works, they are not a clean comparison."
  fi
  echo
  echo "## Machine"
  echo
  configs_machine_info
  echo
  echo "## Method"
  echo
  echo "- Per configuration, the backend runs as local processes on loopback: \`redis\` = one"
  echo "  redis-server; \`redis-cluster\` = three redis-server masters joined with"
  echo "  \`redis-cli --cluster create\`; \`nats\` = nats-server with JetStream plus a redis-server for"
  echo "  the cache; \`local\` = none (one node, memory cache). Clustered, both servers share the cache"
  echo "  on the backend's Redis (the reference refuses a node-local cache when clustered)."
  echo "- Pinning: $pinning. Each server gets fresh nodes per configuration, stopped by PID after."
  echo "- Ours: \`target/release/sockudo --config\` tests/bench/ours-config.json + the adapter"
  echo "  (\`database.redis\`, \`database.redis_cluster\` or \`nats.servers\`), \`node_id\` per node, delta"
  echo "  compression on with \`cluster_coordination\` on (off for local)."
  echo "- Reference: sockudo 5.2.0 from crates.io built with \`--features $ref_features\`, configured by"
  echo "  environment (ADAPTER_DRIVER, CACHE_DRIVER, REDIS_URL, REDIS_CLUSTER_NODES, NATS_SERVERS,"
  echo "  ADAPTER_FALLBACK_TO_LOCAL=false,"
  echo "  the default app 1234/app-key/app-secret with raised limits, rate limiter off). Its delta"
  echo "  settings are its defaults (no environment variables exist for them): fossil, every 10th"
  echo "  message full, no cluster coordination; it sends deltas only to protocol-2 connections, so"
  echo "  its delta runs connect with \`?protocol=2\` (ours: 7). It skips cross-node broadcasts until it"
  echo "  has seen a peer heartbeat (every 10 s), so it gets 12 s after start; ours waits for \`/ready\`."
  echo "- \`xnode-latency-*\`: $latency_args: subscribers on node A, signed HTTP publishes to node B,"
  echo "  latency = receive time - send time of every delivery on one clock (see README, \`cross-node\`)."
  echo "- \`xnode-ramp-*\`: $ramp_args: the max deliveries/s whose step keeps p99 <= 100 ms."
  echo "- \`delta-*\`: $delta_args: bytes on the wire per message with delta on vs off for a ticker"
  echo "  stream (subscribers on A, publishes on B), every delta decoded with tests/delta-client and"
  echo "  compared with the published payload."
  echo "- The cache / rate-limiter section is server/examples/cache_limiter_bench.rs (method in"
  echo "  [server/BENCHMARKS-cache-limiter.md](../../server/BENCHMARKS-cache-limiter.md)); it has no"
  echo "  reference counterpart."
  echo
  runs_and_numbers "$results" "$prefix" "$bench" "${report_args[@]}"
  echo
  echo "## Cache and rate limiter: added latency per driver (ours)"
  echo
  cat "$cache_out"
} >"$md"
echo
echo "== wrote $md in $((elapsed / 60)) min"
