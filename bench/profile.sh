#!/usr/bin/env bash
# Where the metered proxy's CPU goes (bench/run.sh's target 2): the proxy with 50 vouchers at
# c=64, sampled by `perf record` for DURATION seconds while wrk runs, then a flat profile (self
# time by symbol) for each of voucherd's threads, and the CPU each thread used in that time.
#
#   bash bench/profile.sh                      # SQLite
#   BACKEND=postgres bash bench/profile.sh
#   VOUCHERD_BIN=path/to/voucherd bash bench/profile.sh
#   KEEP=target/perf.data bash bench/profile.sh   # keep the samples for `perf report -i`
#   EXTRA_CONFIG='usage_linger_us = 0' bash bench/profile.sh   # another setting, same build
#   PERF=0 bash bench/profile.sh                 # throughput, batches and CPU, without sampling
#
# Needs wrk and perf (linux-perf); PostgreSQL on 127.0.0.1:5432 for BACKEND=postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-sqlite}
DURATION=${DURATION:-8}
TOP=${TOP:-25}
# How perf records call stacks: `--call-graph dwarf` unwinds a release build without frame pointers.
CALLGRAPH=${CALLGRAPH:--g}
PERF=${PERF:-1}
CONNS=${CONNS:-64}
THREADS=$(( CONNS > 1 ? 2 : 1 ))
PG_ADMIN=${VOUCHERD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
UP=18081 PROXY=18100

for tool in wrk perf; do
  command -v "$tool" >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk linux-perf; }
done
# shellcheck source=bench/common.sh
. bench/common.sh

"$TOOL" upstream --port $UP --chunk-delay-ms 20 --chunks 50 --workers 1 > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
bench_config "$WORK/mail" "${EXTRA_CONFIG:-}" > "$WORK/voucherd.toml"
if [ "$BACKEND" = sqlite ]; then
  DB="sqlite://$WORK/bench.db"
else
  psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS voucherd_profile WITH (FORCE)" -c "CREATE DATABASE voucherd_profile"
  DB="${PG_ADMIN%/*}/voucherd_profile"
fi
bench_env "$WORK/voucherd.toml" "$DB"
"$BIN" serve > "$WORK/voucherd.log" 2>&1 &
VPID=$!
PIDS+=($VPID)
wait_port $PROXY; wait_port $UP
bench_vouchers 50 "$WORK/mail" > "$WORK/keys"
# Warm up (leases opened, statements prepared), then measure.
KEYS_FILE="$WORK/keys" wrk -t2 -c64 -d2s -s bench/wrk.lua "http://127.0.0.1:$PROXY" > /dev/null

# CPU ticks of each of voucherd's threads (utime + stime), by thread name.
ticks() {
  for t in /proc/"$VPID"/task/*; do
    awk '{ sub(/^[0-9]+ \(/, ""); name = $0; sub(/\).*/, "", name); rest = $0; sub(/^[^)]*\) /, "", rest);
           split(rest, f, " "); print name "\t" f[12] + f[13] }' "$t/stat" 2>/dev/null || true
  done | awk -F'\t' '{ s[$1] += $2 } END { for (n in s) print n "\t" s[n] }' | sort
}
ticks > "$WORK/ticks.before"
batches=$(metric usage_batches_total); rows=$(metric usage_batch_rows_total); stmts=$(metric db_statements_total)
SAMPLER=
if [ "$PERF" = 1 ]; then
  perf record -q -F 999 $CALLGRAPH -p "$VPID" -o "$WORK/perf.data" -- sleep "$DURATION" 2> /dev/null &
  SAMPLER=$!
fi
vmstat 1 "$DURATION" > "$WORK/vmstat" &
VMSTAT=$!
out=$(KEYS_FILE="$WORK/keys" wrk --latency -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/wrk.lua "http://127.0.0.1:$PROXY")
[ -z "$SAMPLER" ] || wait "$SAMPLER" || true
wait $VMSTAT || true
ticks > "$WORK/ticks.after"
echo "$BACKEND, 50 vouchers, c=$CONNS: $(echo "$out" | awk '/Requests\/sec/ { print $2 }') req/s, latency mean $(echo "$out" | awk '$1 == "Latency" { print $2; exit }') p50 $(echo "$out" | awk '$1 == "50%" { print $2 }') p99 $(echo "$out" | awk '$1 == "99%" { print $2 }')"
reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
awk -v b="$(( $(metric usage_batches_total) - batches ))" -v r="$(( $(metric usage_batch_rows_total) - rows ))" \
  -v s="$(( $(metric db_statements_total) - stmts ))" -v q="$reqs" \
  'BEGIN { printf "group commits: %d, %.1f rows each; %.3f statements per request\n", b, (b ? r / b : 0), (q ? s / q : 0) }'
# vmstat's first line is the average since boot: skipped.
awk 'NR > 3 { us += $13; sy += $14; id += $15; n++ } END { if (n) printf "whole machine: user %d %%, system %d %%, idle %d %%\n", us / n, sy / n, id / n }' "$WORK/vmstat"
hz=$(getconf CLK_TCK)
echo "CPU by thread (% of one core over the ${DURATION} s):"
join -t $'\t' "$WORK/ticks.before" "$WORK/ticks.after" |
  awk -F'\t' -v hz="$hz" -v d="$DURATION" '{ p = ($3 - $2) * 100 / hz / d; if (p >= 1) printf "  %-24s %5.1f %%\n", $1, p }' | sort -t$'\t' -k2 -rn
[ "$PERF" = 1 ] || exit 0
if [ -n "${KEEP:-}" ]; then cp "$WORK/perf.data" "$KEEP"; echo "samples kept in $KEEP"; fi
perf report -i "$WORK/perf.data" --no-children -g none --sort comm,dso,symbol --stdio 2> /dev/null |
  grep -v '^#' | grep -v '^$' | sed -E 's/ {2,}/  /g' | cut -c1-160 > "$WORK/flat.txt" || true
echo "Self time by thread and symbol (top $TOP of all samples):"
head -n "$TOP" "$WORK/flat.txt"
