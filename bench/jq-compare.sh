#!/usr/bin/env bash
# Translates the same Haravan paid orders with jq 1.6 (Debian's jq, bench/legion-haravan.jq)
# and with storehook's mappings (examples/translate_lines.rs), one after the other in one
# run, each on one core, JSON in and payload JSON out; prints orders/s for both and the ratio.
#
#   bash bench/jq-compare.sh [ORDERS]      (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-20000}
command -v jq >/dev/null || { echo "jq is not installed: apt-get install jq" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Distinct orders (ids, numbers and phones differ, so no cache helps either side), compact,
# one per line, from the paid fixture.
python3 - "$orders" fixtures/haravan/paid-two-items-discount.json > "$work/orders.jsonl" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
order = json.load(open(path, encoding="utf-8"))
for i in range(n):
    order["id"] = 2000000000 + i
    order["order_number"] = f"#{300000 + i}"
    phone = f"09{12000000 + i:08d}"
    for holder in (order.get("customer"), order.get("billing_address"), order.get("shipping_address")):
        if holder is not None:
            holder["phone"] = phone
    print(json.dumps(order, ensure_ascii=False, separators=(",", ":")))
PY
size=$(head -1 "$work/orders.jsonl" | wc -c)
echo "orders: $orders Haravan paid orders of $size bytes each; $(jq --version)"

# The same work on both sides: only the Legion mapping, and the jq program that does what it
# does. BENCH_MAPPINGS and BENCH_JQ name another build's (bench/ab.sh).
mkdir -p "$work/mappings/haravan"
cp "${BENCH_MAPPINGS:-mappings}/haravan/legion-purchase.toml" "$work/mappings/haravan/"
program=${BENCH_JQ:-bench/legion-haravan.jq}

# BENCH_TRANSLATE runs another build's translate_lines instead (bench/ab.sh).
if [ -z "${BENCH_TRANSLATE:-}" ]; then
  cargo build --release --quiet --example translate_lines
fi
bin=${BENCH_TRANSLATE:-target/release/examples/translate_lines}

now() { date +%s.%N; }
t0=$(now)
taskset -c 0 jq -c -f "$program" < "$work/orders.jsonl" > "$work/jq.out"
t1=$(now)
STOREHOOK_TIME_ZONE=Asia/Ho_Chi_Minh taskset -c 0 "$bin" "$work/mappings" haravan orders/paid \
  < "$work/orders.jsonl" > "$work/storehook.out" 2> "$work/storehook.err"
t2=$(now)

jq_lines=$(wc -l < "$work/jq.out")
sh_lines=$(wc -l < "$work/storehook.out")
# translate_lines' own count, from the first order to the last (without its start-up)
inner=$(grep -o '= [0-9]* orders/s' "$work/storehook.err" | grep -o '[0-9]*' || echo 0)
python3 - "$orders" "$t0" "$t1" "$t2" "$jq_lines" "$sh_lines" "$inner" <<'PY'
import sys
n, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:5])
jq_lines, sh_lines, inner = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
jq_rate = n / (t1 - t0)
sh_rate = n / (t2 - t1)
print(f"jq 1.6    : {jq_rate:10.0f} orders/s  ({t1 - t0:.3f} s, {jq_lines} Legion events)")
print(f"storehook : {sh_rate:10.0f} orders/s  ({t2 - t1:.3f} s, {sh_lines} Legion events, schema-validated)")
print(f"ratio     : {sh_rate / jq_rate:.1f}x  (whole processes)")
print(f"            {inner / jq_rate:.1f}x  (storehook from its first order to its last: {inner} orders/s;"
      f" the difference is its start-up, mostly the phone metadata)")
PY
cat "$work/storehook.err"
