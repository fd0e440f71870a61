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
#                        [--mappings DIR] [--store URL] [--instances 1] [--no-build] [--keep]
#
# --store runs storehook on another store than a fresh SQLite file in the temp dir: a
# PostgreSQL URL (postgres://…) names an empty database or schema, e.g.
#   psql "$DATABASE_URL" -c 'CREATE SCHEMA bench1'
#   bash bench/ingest.sh --store "$DATABASE_URL?options=-csearch_path%3Dbench1"
# (the script neither creates nor empties it).
#
# --instances N runs N `storehook serve` processes on the same store (so it needs a
# PostgreSQL --store; SQLite is one instance), each on its own port with its own log, and
# loadgen spreads the load over them in turn: each instance gets 1/N of the connections and,
# at a fixed rate, 1/N of the requests. RSS and CPU are then summed over the instances (the
# RSS target is checked against the largest single instance). E.g. three instances:
#   psql "$DATABASE_URL" -c 'CREATE SCHEMA bench3'
#   bash bench/ingest.sh --instances 3 \
#     --store "postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench3"
#
# --mappings runs storehook on another mappings directory than the repo's `mappings/`; an
# empty directory measures durable ingest without translation or deliveries (every webhook
# is stored, none makes a delivery).
# --phases runs only some phases, or in another order (e.g. `rate` alone on a fresh store).
# The same settings from the environment: BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
# BENCH_RATE, BENCH_RATE_CONNECTIONS, BENCH_DRAIN, BENCH_PHASES, BENCH_MAPPINGS, BENCH_STORE_URL,
# BENCH_INSTANCES, BENCH_SALEKIT_RATE (below), BENCH_STOREHOOK (the storehook binary to run,
# default target/release/storehook), BENCH_CONFIG (the storehook.toml to copy, default the
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
instances=${BENCH_INSTANCES:-1}
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
    --instances) instances=$2; shift 2 ;;
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
[[ $instances =~ ^[1-9][0-9]*$ ]] || { echo "--instances must be a number from 1: $instances" >&2; exit 2; }
if [ "$instances" -gt 1 ] && [[ ! $store_url =~ ^postgres(ql)?:// ]]; then
  echo "--instances $instances needs --store with a PostgreSQL URL (postgres://…):" \
    "several instances share one store, and a SQLite store serves one instance" >&2
  exit 2
fi
for n in "$connections" "$rate_connections"; do
  [ "$n" -ge "$instances" ] 2>/dev/null \
    || { echo "each phase needs at least one connection per instance ($instances): $n" >&2; exit 2; }
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
double_pid= sampler_pid= loadgen_pid=
storehook_pids=()
# Stops processes this script started: SIGTERM to each, then SIGKILL to those still running
# after 10 s.
stop() {
  local pid running left=()
  for pid in "$@"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && left+=("$pid")
  done
  [ ${#left[@]} -gt 0 ] || return 0
  for _ in $(seq 100); do
    running=0
    for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 1 ] || break
    sleep 0.1
  done
  for pid in "${left[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  local status=$?
  # storehook before the double, so its workers never see the double gone.
  stop "$loadgen_pid"; stop "$sampler_pid"; stop "${storehook_pids[@]}"; stop "$double_pid"
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
  for log in "$work"/storehook*.log "$work/double.err"; do
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

# The bench's copy of the configuration.
# BENCH_CONFIG names the storehook.toml to copy (bench/ab.sh gives each build its own).
sed "s/^rate_limit_per_second = 5\$/rate_limit_per_second = $salekit_rate/" "${BENCH_CONFIG:-storehook.toml}" > "$work/storehook.toml"
grep -q "^rate_limit_per_second = $salekit_rate\$" "$work/storehook.toml" \
  || fail "storehook.toml no longer has 'rate_limit_per_second = 5' for Salekit: update the sed line"
secret="bench-$(date +%s)-$RANDOM"
# start_storehook PORT LOG: one storehook instance on the store, in the background.
start_storehook() {
  env -u SHOPIFY_WEBHOOK_SECRET -u WOOCOMMERCE_WEBHOOK_SECRET -u HARAVAN_WEBHOOK_SECRET_PREVIOUS \
    HARAVAN_WEBHOOK_SECRET="$secret" \
    LEGION_BASE_URL="$double_url" LEGION_API_KEY=bench-legion-key \
    SCALEF_BASE_URL="$double_url" SCALEF_USER=bench SCALEF_ACCESS_TOKEN=bench-scalef-token \
    SCALEF_CAMPAIGN_ID=463 \
    SALEKIT_BASE_URL="$double_url" SALEKIT_TOKEN=bench-salekit-token \
    STOREHOOK_STORE_URL="${store_url:-sqlite://$work/storehook.db}" \
    STOREHOOK_MAPPINGS_DIR="$mappings" \
    PORT="$1" RUST_LOG="${RUST_LOG:-info}" STOREHOOK_LOG_FORMAT=text \
    "$storehook" --config "$work/storehook.toml" serve > "$2" 2>&1 &
}

# The storehook instances, each on a free port and with its own log (storehook.log when
# there is one, else storehook.1.log, storehook.2.log, …). They start together: on
# PostgreSQL the migrations take an advisory lock, so one instance migrates and the others
# wait for it.
bases=()
for i in $(seq "$instances"); do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [ "$instances" = 1 ]; then log="$work/storehook.log"; else log="$work/storehook.$i.log"; fi
  start_storehook "$port" "$log"
  storehook_pids+=($!)
  bases+=("http://127.0.0.1:$port")
done
for i in "${!bases[@]}"; do
  base=${bases[$i]}
  for _ in $(seq 300); do
    kill -0 "${storehook_pids[$i]}" 2>/dev/null || fail "storehook on $base exited at start"
    curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "$base/readyz" || fail "storehook did not become ready on $base/readyz"
done
if [ "$instances" = 1 ]; then
  echo "storehook (pid ${storehook_pids[0]}) on ${bases[0]}, mappings $mappings, double on $double_url, temp dir $work" >&2
else
  echo "$instances storehook instances (pids ${storehook_pids[*]}) on ${bases[*]}, mappings $mappings," \
    "double on $double_url, temp dir $work" >&2
fi

# Memory and CPU, over the instances: "SUM MAX" of VmRSS or VmHWM in KiB (a process that is
# gone counts 0), and the CPU time (user + system) of them all in clock ticks.
mem_kib() {
  local pid
  for pid in "${storehook_pids[@]}"; do cat "/proc/$pid/status" 2>/dev/null || true; done \
    | awk -v field="$1:" '$1 == field {sum += $2; if ($2 > max) max = $2} END {print sum + 0, max + 0}'
}
cpu_ticks() {
  local pid
  for pid in "${storehook_pids[@]}"; do cat "/proc/$pid/stat" 2>/dev/null || true; done \
    | awk '{sub(/^.*\) /, ""); sum += $12 + $13} END {print sum + 0}'
}
ticks_per_s=$(getconf CLK_TCK)
all_running() {
  local pid
  for pid in "${storehook_pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}

# Writes the largest summed VmRSS seen and the largest of one instance ("SUM MAX", KiB) to
# $1, every 200 ms, until killed.
sample_rss() {
  local out=$1 max_sum=0 max_one=0 sum one
  while all_running; do
    read -r sum one < <(mem_kib VmRSS)
    if [ "$sum" -gt "$max_sum" ] || [ "$one" -gt "$max_one" ]; then
      [ "$sum" -gt "$max_sum" ] && max_sum=$sum
      [ "$one" -gt "$max_one" ] && max_one=$one
      echo "$max_sum $max_one" > "$out"
    fi
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

# loadgen's targets: every instance, in turn.
urls=()
for base in "${bases[@]}"; do urls+=(--url "$base/webhooks/haravan"); done
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
  HARAVAN_WEBHOOK_SECRET="$secret" "$loadgen" ingest "${urls[@]}" \
    --warmup "$warmup" --duration "$duration" --json "$@" \
    > "$work/$name.json" 2> "$work/$name.err" &
  loadgen_pid=$!
  wait "$loadgen_pid" || { loadgen_pid=; cat "$work/$name.err" >&2; fail "loadgen failed in phase $name"; }
  loadgen_pid=
  cpu1=$(cpu_ticks); t1=$(date +%s.%N)
  # (An instance gone would also take its CPU time out of the sum.)
  all_running || fail "a storehook instance exited during phase $name"
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
read -r hwm_sum hwm_one < <(mem_kib VmHWM)

# The summary.
mib() { python3 -c "print(f'{${1:-0} / 1024:.1f}')"; }
verdict() { python3 -c "print('meets' if $1 else 'MISSES')"; }
phase_line() {
  jq -r '"\(.rps) req/s  p50 \(.latency_ms.p50) ms  p90 \(.latency_ms.p90) ms  p99 \(.latency_ms.p99) ms  max \(.latency_ms.max) ms  (\(.requests) requests, non-200: \(.non_200 | to_entries | map("\(.key)×\(.value)") | join(", ") | if . == "" then "none" else . end), errors: \(.errors)\(if .unsent > 0 then ", unsent: \(.unsent)" else "" end))"' "$1"
}
# With several instances: how the phase's requests were spread over them.
per_instance() {
  [ "$instances" = 1 ] || echo "  requests per instance: $(jq -r '.requests_per_url | map(tostring) | join(", ")' "$1")"
}
counts=$(curl -fsS "$double_url/counts")
rss_max=0 rss_one_max=0 rss_parts=() rss_one_parts=() cpu_parts=() per_webhook_parts=() gen_parts=() stored_parts=() drain_parts=() e2e_parts=()
echo
if [ "$instances" = 1 ]; then ran_instances="1 storehook instance"; summed= of_all=
else ran_instances="$instances storehook instances"; summed=" summed over the $instances instances"; of_all=" of all $instances instances"; fi
echo "== storehook durable ingest ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $ran_instances;" \
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
    per_instance "$j"
    echo "  target >= 18000 req/s: $(verdict "$(jq .rps "$j") >= 18000")"
  else
    label="fixed rate"
    echo "fixed rate $rate req/s over $rate_connections connections, $duration after $warmup warm-up (latency from due time):"
    echo "  $(phase_line "$j")"
    per_instance "$j"
    echo "  service time p50 $(jq .service_latency_ms.p50 "$j") ms, p99 $(jq .service_latency_ms.p99 "$j") ms; send lag p99 $(jq .send_lag_ms.p99 "$j") ms"
    echo "  target p99 <= 5 ms: $(verdict "$(jq .latency_ms.p99 "$j") <= 5")"
  fi
  rss= rss_one=
  read -r rss rss_one < "$work/rss.$phase" || true
  rss=${rss:-0} rss_one=${rss_one:-0}
  [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  [ "$rss_one" -gt "$rss_one_max" ] && rss_one_max=$rss_one
  rss_parts+=("$label $(mib "$rss")")
  rss_one_parts+=("$label $(mib "$rss_one")")
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
if [ "$instances" = 1 ]; then
  echo "storehook RSS: max $(mib "$rss_max") MiB sampled every 200 ms ($(join "${rss_parts[@]}")); VmHWM $(mib "$hwm_sum") MiB"
  echo "  target <= 120 MiB: $(verdict "$rss_one_max <= 120 * 1024")"
else
  echo "storehook RSS$summed: max $(mib "$rss_max") MiB sampled every 200 ms ($(join "${rss_parts[@]}")), VmHWM $(mib "$hwm_sum") MiB;" \
    "one instance at most $(mib "$rss_one_max") MiB ($(join "${rss_one_parts[@]}")), VmHWM $(mib "$hwm_one") MiB"
  echo "  target <= 120 MiB per instance: $(verdict "$rss_one_max <= 120 * 1024")"
fi
echo "storehook CPU$summed: $(join "${cpu_parts[@]}") of one core (whole phase incl. warm-up; $(nproc) cores = $(( $(nproc) * 100 ))%)"
echo "storehook CPU per webhook stored: $(join "${per_webhook_parts[@]}") (the phase's CPU time$of_all over its webhooks; deliveries left for the drain are not in it)"
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
