#!/usr/bin/env bash
# A/B in one run: this work tree's build against revision REV's, alternating, PAIRS pairs
# (the order within a pair swaps each time, so a drift of the machine's speed is shared).
# Each pair runs `bench/ingest.sh` once per build (closed loop, then fixed rate) and
# `bench/jq-compare.sh` once per build; the summary lists every run's closed-loop req/s,
# fixed-rate p99 and translation ratio against jq 1.6, and their medians.
#
#   bash bench/ab.sh REV [PAIRS] [ingest.sh options ...]     (default 5 pairs)
#
# REV is built in a temporary git worktree with its own target dir (BENCH_AB_BASE=DIR keeps
# and reuses that worktree and its build); the work tree's build is `target/release`. Each
# build runs with its own `mappings/`, `storehook.toml` and jq program (each translation
# ratio is against the jq that does what that build's mapping does). ORDERS for jq-compare:
# BENCH_AB_ORDERS (20000).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash bench/ab.sh REV [PAIRS] [ingest.sh options ...]" >&2; exit 2; }
rev=$1; shift
pairs=5
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then pairs=$1; shift; fi
orders=${BENCH_AB_ORDERS:-20000}

base=${BENCH_AB_BASE:-$(mktemp -d -t storehook-ab.XXXXXX)}
if [ ! -d "$base/tree" ]; then
  git worktree add --detach --quiet "$base/tree" "$rev"
fi
echo "building $rev in $base/tree and the work tree (release) ..." >&2
(cd "$base/tree" && cargo build --release --quiet --bin storehook && cargo build --release --quiet --example translate_lines)
cargo build --release --quiet --bin storehook
cargo build --release --quiet -p storehook-loadgen
cargo build --release --quiet --example translate_lines

declare -A bin translate mappings config program
bin[A]=$base/tree/target/release/storehook
translate[A]=$base/tree/target/release/examples/translate_lines
mappings[A]=$base/tree/mappings
config[A]=$base/tree/storehook.toml
program[A]=$base/tree/bench/legion-haravan.jq
bin[B]=$PWD/target/release/storehook
translate[B]=$PWD/target/release/examples/translate_lines
mappings[B]=$PWD/mappings
config[B]=$PWD/storehook.toml
program[B]=$PWD/bench/legion-haravan.jq
results=$(mktemp -t storehook-ab-results.XXXXXX)

run() {
  local side=$1 out
  out=$(BENCH_STOREHOOK=${bin[$side]} BENCH_CONFIG=${config[$side]} bash bench/ingest.sh --no-build --mappings "${mappings[$side]}" "${@:2}")
  echo "$out" >&2
  local rps p99 ratio
  rps=$(awk '/^closed loop,/ {getline; print $1; exit}' <<< "$out")
  p99=$(awk '/^fixed rate/ {getline; for (i = 1; i < NF; i++) if ($i == "p99") {print $(i + 1); exit}}' <<< "$out")
  # awk reads to the end: exiting early would end jq-compare.sh with SIGPIPE.
  ratio=$(BENCH_TRANSLATE=${translate[$side]} BENCH_MAPPINGS=${mappings[$side]} BENCH_JQ=${program[$side]} \
    bash bench/jq-compare.sh "$orders" | awk '/^ratio/ && !done {sub(/x$/, "", $3); print $3; done = 1}')
  echo "$side ${rps:-?} ${p99:-?} ${ratio:-?}" | tee -a "$results" >&2
}

for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) = 1 ]; then run A "$@"; run B "$@"; else run B "$@"; run A "$@"; fi
done

echo
echo "== A/B: A = $rev ($(git rev-parse --short "$rev")), B = work tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo ', with changes')); $pairs pairs =="
python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for side in "AB":
    runs = [r for r in rows if r[0] == side]
    def col(i):
        return [float(r[i]) for r in runs if r[i] != "?"]
    rps, p99, ratio = col(1), col(2), col(3)
    show = lambda xs: ", ".join(f"{x:g}" for x in xs)
    print(f"{side}: closed loop req/s {show(rps)} (median {statistics.median(rps):g}, min {min(rps):g}, max {max(rps):g})")
    print(f"   fixed-rate p99 ms {show(p99)} (median {statistics.median(p99):g}, min {min(p99):g}, max {max(p99):g})")
    print(f"   translation vs jq 1.6 {show(ratio)}x (median {statistics.median(ratio):g}x)")
PY
