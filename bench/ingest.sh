#!/usr/bin/env bash
# Durable-ingest benchmark: storehook (release build, SQLite in a temp dir, the repo's
# mappings) receives distinct, correctly signed Haravan paid orders from bench/loadgen, and
# its delivery workers forward every delivery to a local double of Legion, Scalef and
# Salekit (`loadgen double`). Two phases against the same server:
#   (a) closed loop: N connections, each sends its next order when the previous is answered
#       (throughput: req/s, and p50/p99 latency at that load);
#   (b) fixed rate: R req/s in all over the connections, latency counted from when each
#       request was due (no coordinated omission).
# During each phase storehook's VmRSS is sampled every 200 ms (max reported); VmHWM at the
# end. After each phase the script waits (at most --drain seconds, or until nothing arrived
# for 10 s) for the deliveries that phase created to reach the double, so phase (b) is not
# measured while (a)'s backlog is delivered; the summary says how far each drain got.
#
#   bash bench/ingest.sh [--duration 20s] [--warmup 3s] [--connections 64] [--rate 2000]
#                        [--rate-connections N] [--drain 120] [--phases closed,rate]
#                        [--mappings DIR] [--store URL] [--no-build] [--keep]
#
# --store runs storehook on another store than a fresh SQLite file in the temp dir: a
# PostgreSQL URL (postgres://…) names an empty database or schema, e.g.
#   psql "$DATABASE_URL" -c 'CREATE SCHEMA bench1'
#   bash bench/ingest.sh --store "$DATABASE_URL?options=-csearch_path%3Dbench1"
# (the script neither creates nor empties it).
#
# --mappings runs storehook on another mappings directory than the repo's `mappings/`; an
# empty directory measures durable ingest without translation or deliveries (every webhook
# is stored, none makes a delivery).
# --phases runs only some phases, or in another order (e.g. `rate` alone on a fresh store).
# The same settings from the environment: BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
# BENCH_RATE, BENCH_RATE_CONNECTIONS, BENCH_DRAIN, BENCH_PHASES, BENCH_MAPPINGS, BENCH_STORE_URL,
# BENCH_SALEKIT_RATE (below), BENCH_STOREHOOK (the storehook binary to run, default
# target/release/storehook), BENCH_CONFIG (the storehook.toml to copy, default the
# repository's),
# BENCH_KEEP=1 (keep the temp dir with the logs, the database and the JSON results).
# RUST_LOG is passed to storehook (default info: one log line per webhook, as in
# production; the log goes to the temp dir).
#
# Configuration: storehook.toml limits Salekit to 5 requests/s (rate_limit_per_second = 5),
# which would leave almost every Salekit delivery queued for the whole run. The bench runs
# storehook with `--config` on a copy of storehook.toml in the temp dir where that limit is
# BENCH_SALEKIT_RATE (default 100000, i.e. no practical limit); nothing else is changed.
#
# Targets (the issue): >= 18,000 req/s at 64 connections; p99 <= 5 ms at 2,000 req/s;
# RSS <= 120 MiB under load. The script reports; it never fails on a missed target.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-20s}
warmup=${BENCH_WARMUP:-3s}
connections=${BENCH_CONNECTIONS:-64}
rate=${BENCH_RATE:-2000}
rate_connections=${BENCH_RATE_CONNECTIONS:-}
drain=${BENCH_DRAIN:-120}
salekit_rate=${BENCH_SALEKIT_RATE:-100000}
keep=${BENCH_KEEP:-0}
phases=${BENCH_PHASES:-closed,rate}
mappings=${BENCH_MAPPINGS:-$PWD/mappings}
store_url=${BENCH_STORE_URL:-}
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --rate-connections) rate_connections=$2; shift 2 ;;
    --drain) drain=$2; shift 2 ;;
    --phases) phases=$2; shift 2 ;;
    --mappings) mappings=$2; shift 2 ;;
    --store) store_url=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
rate_connections=${rate_connections:-$connections}
# (relative to the repository root, where the script runs)
[ -d "$mappings" ] || { echo "no such mappings directory: $mappings" >&2; exit 2; }
mappings=$(cd "$mappings" && pwd)
for phase in ${phases//,/ }; do
  case "$phase" in closed|rate) ;; *) echo "unknown phase: $phase (closed, rate)" >&2; exit 2 ;; esac
done

for tool in jq curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install $tool)" >&2; exit 1; }
done

if [ "$build" = 1 ]; then
  # Two invocations, so storehook is built with exactly its own dependency features.
  echo "building (release) ..." >&2
  cargo build --release --quiet --bin storehook
  cargo build --release --quiet -p storehook-loadgen
fi
# BENCH_STOREHOOK runs another build's binary (bench/ab.sh compares two builds this way).
storehook=${BENCH_STOREHOOK:-target/release/storehook}
loadgen=target/release/loadgen
[ -x "$storehook" ] && [ -x "$loadgen" ] || { echo "missing $storehook or $loadgen: run without --no-build" >&2; exit 1; }

work=$(mktemp -d -t storehook-bench.XXXXXX)
double_pid= storehook_pid= sampler_pid= loadgen_pid=
# Stops a process this script started: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  # storehook before the double, so its workers never see the double gone.
  stop "$loadgen_pid"; stop "$sampler_pid"; stop "$storehook_pid"; stop "$double_pid"
  if [ "$keep" = 1 ] || [ "$status" != 0 ]; then
    echo "logs, database and results kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "ingest.sh: $*" >&2
  for log in "$work/storehook.log" "$work/double.err"; do
    [ -s "$log" ] && { echo "--- tail of $log" >&2; tail -20 "$log" >&2; }
  done
  exit 1
}

# The destination double, on a free port it picks and prints.
"$loadgen" double --listen 127.0.0.1:0 > "$work/double.out" 2> "$work/double.err" &
double_pid=$!
for _ in $(seq 100); do
  [ -s "$work/double.out" ] && break
  sleep 0.05
done
double_url=$(head -1 "$work/double.out" | awk '/^listening on /{print $3}')
[ -n "$double_url" ] || fail "the double did not start"

# storehook, on a free port, with the bench's copy of the configuration.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# BENCH_CONFIG names the storehook.toml to copy (bench/ab.sh gives each build its own).
sed "s/^rate_limit_per_second = 5\$/rate_limit_per_second = $salekit_rate/" "${BENCH_CONFIG:-storehook.toml}" > "$work/storehook.toml"
grep -q "^rate_limit_per_second = $salekit_rate\$" "$work/storehook.toml" \
  || fail "storehook.toml no longer has 'rate_limit_per_second = 5' for Salekit: update the sed line"
secret="bench-$(date +%s)-$RANDOM"
env -u SHOPIFY_WEBHOOK_SECRET -u WOOCOMMERCE_WEBHOOK_SECRET -u HARAVAN_WEBHOOK_SECRET_PREVIOUS \
  HARAVAN_WEBHOOK_SECRET="$secret" \
  LEGION_BASE_URL="$double_url" LEGION_API_KEY=bench-legion-key \
  SCALEF_BASE_URL="$double_url" SCALEF_USER=bench SCALEF_ACCESS_TOKEN=bench-scalef-token \
  SCALEF_CAMPAIGN_ID=463 \
  SALEKIT_BASE_URL="$double_url" SALEKIT_TOKEN=bench-salekit-token \
  STOREHOOK_STORE_URL="${store_url:-sqlite://$work/storehook.db}" \
  STOREHOOK_MAPPINGS_DIR="$mappings" \
  PORT="$port" RUST_LOG="${RUST_LOG:-info}" STOREHOOK_LOG_FORMAT=text \
  "$storehook" --config "$work/storehook.toml" serve > "$work/storehook.log" 2>&1 &
storehook_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 300); do
  kill -0 "$storehook_pid" 2>/dev/null || fail "storehook exited at start"
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "$base/readyz" || fail "storehook did not become ready on $base/readyz"
echo "storehook (pid $storehook_pid) on $base, mappings $mappings, double on $double_url, temp dir $work" >&2

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$storehook_pid/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$storehook_pid/status" 2>/dev/null || echo 0; }
# CPU time (user + system) in clock ticks.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$storehook_pid/stat" 2>/dev/null || echo 0; }
ticks_per_s=$(getconf CLK_TCK)

# Writes the largest VmRSS seen (KiB) to $1, every 200 ms, until killed.
sample_rss() {
  local out=$1 max=0 rss
  while kill -0 "$storehook_pid" 2>/dev/null; do
    rss=$(rss_kib)
    if [ "${rss:-0}" -gt "$max" ]; then max=$rss; echo "$max" > "$out"; fi
    sleep 0.2
  done
}

delivered() { curl -fsS "$double_url/counts" | jq '.total_deliveries'; }

# Waits until the double has received $1 deliveries in all, or nothing arrived for 10 s, or
# $drain seconds passed. Prints the seconds waited.
wait_for_deliveries() {
  local want=$1 start last now seen
  start=$(date +%s.%N); last=$start; seen=$(delivered)
  while [ "$seen" -lt "$want" ]; do
    sleep 0.5
    now=$(date +%s.%N)
    local got; got=$(delivered)
    if [ "$got" != "$seen" ]; then seen=$got; last=$now; fi
    python3 -c "import sys; sys.exit(0 if $now - $start < $drain and $now - $last < 10 else 1)" || break
  done
  python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')"
}

created_total=0
# run_phase NAME LOADGEN-ARGS...: one loadgen run while sampling storehook.
run_phase() {
  local name=$1; shift
  echo "phase $name: $*" >&2
  : > "$work/rss.$name"
  sample_rss "$work/rss.$name" &
  sampler_pid=$!
  local cpu0 t0 cpu1 t1
  cpu0=$(cpu_ticks); t0=$(date +%s.%N)
  # In the background, so that a signal to this script is handled at once (see the traps).
  HARAVAN_WEBHOOK_SECRET="$secret" "$loadgen" ingest --url "$base/webhooks/haravan" \
    --warmup "$warmup" --duration "$duration" --json "$@" \
    > "$work/$name.json" 2> "$work/$name.err" &
  loadgen_pid=$!
  wait "$loadgen_pid" || { loadgen_pid=; cat "$work/$name.err" >&2; fail "loadgen failed in phase $name"; }
  loadgen_pid=
  cpu1=$(cpu_ticks); t1=$(date +%s.%N)
  kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=
  python3 -c "print(f'{($cpu1 - $cpu0) / $ticks_per_s / ($t1 - $t0) * 100:.0f}')" > "$work/cpu.$name"
  python3 -c "print(($cpu1 - $cpu0) / $ticks_per_s)" > "$work/cpu_s.$name"
  python3 -c "print($t1 - $t0)" > "$work/wall.$name"
  local created
  created=$(jq '.deliveries_created + .warmup.deliveries_created' "$work/$name.json")
  created_total=$((created_total + created))
  wait_for_deliveries "$created_total" > "$work/drain.$name"
  echo "$created_total" > "$work/created.$name"
  delivered > "$work/delivered.$name"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
ran=()
for phase in ${phases//,/ }; do
  case "$phase" in
    closed) run_phase closed --connections "$connections" ;;
    rate) run_phase rate --connections "$rate_connections" --rate "$rate" ;;
  esac
  ran+=("$phase")
done
hwm=$(hwm_kib)

# The summary.
mib() { python3 -c "print(f'{${1:-0} / 1024:.1f}')"; }
verdict() { python3 -c "print('meets' if $1 else 'MISSES')"; }
phase_line() {
  jq -r '"\(.rps) req/s  p50 \(.latency_ms.p50) ms  p90 \(.latency_ms.p90) ms  p99 \(.latency_ms.p99) ms  max \(.latency_ms.max) ms  (\(.requests) requests, non-200: \(.non_200 | to_entries | map("\(.key)×\(.value)") | join(", ") | if . == "" then "none" else . end), errors: \(.errors)\(if .unsent > 0 then ", unsent: \(.unsent)" else "" end))"' "$1"
}
counts=$(curl -fsS "$double_url/counts")
rss_max=0 rss_parts=() cpu_parts=() per_webhook_parts=() gen_parts=() stored_parts=() drain_parts=() e2e_parts=()
echo
echo "== storehook durable ingest ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores;" \
  "load average before $load_before, now $(cut -d' ' -f1-3 /proc/loadavg)) =="
[ "$mappings" = "$PWD/mappings" ] || echo "mappings: $mappings, not the repository's"
# The store, its password masked.
echo "store: $(sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#' <<< "${store_url:-a fresh SQLite file}")"
for phase in "${ran[@]}"; do
  j="$work/$phase.json"
  if [ "$phase" = closed ]; then
    label="closed loop"
    echo "closed loop, $connections connections, $duration after $warmup warm-up:"
    echo "  $(phase_line "$j")"
    echo "  target >= 18000 req/s: $(verdict "$(jq .rps "$j") >= 18000")"
  else
    label="fixed rate"
    echo "fixed rate $rate req/s over $rate_connections connections, $duration after $warmup warm-up (latency from due time):"
    echo "  $(phase_line "$j")"
    echo "  service time p50 $(jq .service_latency_ms.p50 "$j") ms, p99 $(jq .service_latency_ms.p99 "$j") ms; send lag p99 $(jq .send_lag_ms.p99 "$j") ms"
    echo "  target p99 <= 5 ms: $(verdict "$(jq .latency_ms.p99 "$j") <= 5")"
  fi
  rss=$(cat "$work/rss.$phase"); rss=${rss:-0}
  [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  rss_parts+=("$label $(mib "$rss")")
  cpu_parts+=("$label $(cat "$work/cpu.$phase")%")
  stored=$(jq '.stored + .warmup.stored' "$j")
  per_webhook_parts+=("$label $(python3 -c "print(f'{$(cat "$work/cpu_s.$phase") * 1e6 / max(1, $stored):.0f}')") µs")
  gen_parts+=("$label $(jq .generator_cpu_percent "$j")%")
  stored_parts+=("$label $stored new, $(jq '.duplicates + .warmup.duplicates' "$j") duplicates")
  drain_parts+=("after the $label $(cat "$work/delivered.$phase") of $(cat "$work/created.$phase") in $(cat "$work/drain.$phase") s")
  e2e_parts+=("$label $(python3 -c "
wall, drain = $(cat "$work/wall.$phase"), $(cat "$work/drain.$phase")
complete = $(cat "$work/delivered.$phase") >= $(cat "$work/created.$phase")
print(f'{$stored / (wall + drain):.0f} webhooks/s over {wall + drain:.1f} s' + ('' if complete else ' (the drain stopped short: the true rate is lower)'))")")
done
join() { local IFS=';'; echo "$*" | sed 's/;/, /g'; }
echo "storehook RSS: max $(mib "$rss_max") MiB sampled every 200 ms ($(join "${rss_parts[@]}")); VmHWM $(mib "$hwm") MiB"
echo "  target <= 120 MiB: $(verdict "$rss_max <= 120 * 1024")"
echo "storehook CPU: $(join "${cpu_parts[@]}") of one core (whole phase incl. warm-up; $(nproc) cores = $(( $(nproc) * 100 ))%)"
echo "storehook CPU per webhook stored: $(join "${per_webhook_parts[@]}") (the phase's CPU time over its webhooks; deliveries left for the drain are not in it)"
echo "loadgen CPU (measured part): $(join "${gen_parts[@]}") of one core"
echo "webhooks stored (incl. warm-up): $(join "${stored_parts[@]}")"
echo "deliveries: $created_total created; $(jq .total_deliveries <<< "$counts") reached the double" \
  "(legion events $(jq .deliveries.legion_events <<< "$counts") in $(jq '.requests["POST /integration/flow-state/event/add/"] // 0' <<< "$counts") requests," \
  "salekit $(jq .deliveries.salekit_audience <<< "$counts"), scalef $(jq '.deliveries.scalef_create + .deliveries.scalef_status' <<< "$counts"));" \
  "delivered so far when each drain stopped: $(join "${drain_parts[@]}")"
echo "end to end, stored and delivered: $(join "${e2e_parts[@]}") (the phase's webhooks, warm-up included, over the phase and its drain)"
if [ "$(jq '.requests | to_entries | map(select(.key | test("^POST /(integration|api/v1)/") | not)) | length' <<< "$counts")" != 0 ]; then
  echo "  unexpected paths at the double: $(jq -c '.requests' <<< "$counts")"
fi
