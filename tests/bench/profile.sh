#!/usr/bin/env bash
# Load-independent cost of the server's hot path: runs one sockudo-bench workload against a
# fresh server (tests/bench/ours-config.json) and reports the server's work per delivery.
#
#   tests/bench/profile.sh callgrind SERVER_BIN OUT_DIR -- fanout -n 2000 --messages 200 --rate 5
#   tests/bench/profile.sh syscalls  SERVER_BIN OUT_DIR -- fanout -n 2000 --messages 200 --rate 50
#
# callgrind: the server runs under `valgrind --tool=callgrind` with instrumentation off; it is switched
# on once the generator reports every connection subscribed, so the count covers the publishes
# (HTTP request, fan-out, socket writes) and the idle work during them, not the handshakes.
# Instruction counts do not depend on what else runs on the machine. User-space only: the kernel's
# share (socket writes) is what `syscalls` counts.
# syscalls: the server runs natively; `perf stat` counts its system calls, context switches and
# task-clock over the same window.
# Either prints Ir (or syscalls) per delivery and leaves the raw files in OUT_DIR.
set -euo pipefail

mode="$1" bin="$2" out="$3"
shift 3
[ "${1:-}" = "--" ] && shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=tests/bench/common.sh
source "$root/tests/bench/common.sh"
bench="${SOCKUDO_BENCH_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/sockudo-bench}"
mkdir -p "$out"
need() { command -v "$1" >/dev/null || { echo "profile.sh: $1 not found (apt-get install $2)" >&2; exit 2; }; }
case "$mode" in
  callgrind) need valgrind valgrind; need callgrind_control valgrind ;;
  syscalls) need perf linux-perf ;;
esac
[ -x "$bench" ] || { echo "profile.sh: $bench missing (cargo build --release -p sockudo-bench)" >&2; exit 2; }

port="$(free_port)"
mport="$(free_port)"
ours_config "$out/config.json" "$port" "$mport"

ulimit -Sn "$(ulimit -Hn)"
case "$mode" in
  callgrind)
    taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
      --callgrind-out-file="$out/callgrind.out" "$bin" --config "$out/config.json" \
      >"$out/server.log" 2>&1 &
    ;;
  syscalls)
    taskset -c 0 "$bin" --config "$out/config.json" >"$out/server.log" 2>&1 &
    ;;
  *) echo "mode: callgrind | syscalls" >&2; exit 2 ;;
esac
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done

taskset -c 1 "$bench" --port "$port" --server-pid "$pid" "$@" >"$out/bench.txt" 2>&1 &
bench_pid=$!
until grep -q '^subscribed' "$out/bench.txt" 2>/dev/null; do
  kill -0 "$bench_pid" 2>/dev/null || { cat "$out/bench.txt"; exit 1; }
  sleep 0.1
done
if [ "$mode" = callgrind ]; then
  callgrind_control -i on "$pid" >/dev/null
else
  perf stat -e raw_syscalls:sys_enter,context-switches,task-clock,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex -p "$pid" \
    -o "$out/perf-stat.txt" &
  perf_pid=$!
  read -r ut0 st0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
fi
wait "$bench_pid" || true
if [ "$mode" = callgrind ]; then
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
else
  read -r ut1 st1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
fi
kill "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT

delivered="$(grep -oE '[0-9]+/[0-9]+ delivered' "$out/bench.txt" | awk -F/ '{s += $1} END {print s}')"
grep -E '^step|subscribed' "$out/bench.txt"
if [ "$mode" = callgrind ]; then
  # The dump requested above is the newest file callgrind wrote.
  dump="$(ls -t "$out"/callgrind.out.* | head -1)"
  ir="$(awk '/^totals:/ {print $2}' "$dump")"
  echo "deliveries $delivered; Ir $ir; Ir per delivery $((ir / delivered)) ($dump)"
else
  sys="$(awk '/raw_syscalls:sys_enter/ {gsub(",", "", $1); print $1}' "$out/perf-stat.txt")"
  cs="$(awk '/context-switches/ {gsub(",", "", $1); print $1}' "$out/perf-stat.txt")"
  clk="$(awk '/task-clock/ {gsub(",", "", $1); print $1}' "$out/perf-stat.txt")"
  python3 -c "d=$delivered; print(f'deliveries {d}; syscalls/delivery {$sys/d:.3f}; context switches/delivery {$cs/d:.4f}; task-clock us/delivery {$clk*1000/d:.3f}, of which user {($ut1-$ut0)/($ut1-$ut0+$st1-$st0)*100:.0f}% (load: $(cut -d' ' -f1-3 /proc/loadavg))')"
fi
