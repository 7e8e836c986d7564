#!/usr/bin/env bash
# Where the proxy's memory goes, phase by phase (bench/run.sh's target 6 reads only the peak):
# RSS, peak RSS, anonymous and file-backed RSS and threads of `voucherd serve` after start, after
# setting up 50 vouchers, after a c=64 load on them, after a c=64 load on one voucher, and after
# STREAMS concurrent slow streams.
#
#   bash bench/memory.sh                          # SQLite, the default pool
#   BACKEND=postgres DB_MAX_CONNECTIONS=8 bash bench/memory.sh
#   VOUCHERD_BIN=path/to/voucherd bash bench/memory.sh    # another build
#   ENV='_RJEM_MALLOC_CONF=dirty_decay_ms:1000' bash bench/memory.sh   # an allocator setting
#   SMAPS=1 bash bench/memory.sh                  # also each phase's largest mappings by RSS
#   WRAP='heaptrack -o target/heap' VOUCHERD_BIN=... bash bench/memory.sh   # a heap profile
#     (heaptrack sees only the system allocator: build without the jemalloc global allocator)
#
# Needs wrk, and PostgreSQL on 127.0.0.1:5432 (user postgres) for BACKEND=postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-sqlite}
DURATION=${DURATION:-5}
STREAMS=${STREAMS:-1000}
PG_ADMIN=${VOUCHERD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
UP=18081 PROXY=18100

command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
# shellcheck source=bench/common.sh
. bench/common.sh

"$TOOL" upstream --port $UP --chunk-delay-ms 20 --chunks 50 --workers 1 > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
bench_config "$WORK/mail" ${DB_MAX_CONNECTIONS:+"db_max_connections = $DB_MAX_CONNECTIONS"} > "$WORK/voucherd.toml"
if [ "$BACKEND" = sqlite ]; then
  DB="sqlite://$WORK/bench.db"
else
  psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS voucherd_memory WITH (FORCE)" -c "CREATE DATABASE voucherd_memory"
  DB="${PG_ADMIN%/*}/voucherd_memory"
fi
bench_env "$WORK/voucherd.toml" "$DB"
# shellcheck disable=SC2086 # ENV and WRAP are lists of words
env ${ENV:-} ${WRAP:-} "$BIN" serve > "$WORK/voucherd.log" 2>&1 &
PIDS+=($!)
wait_port $PROXY; wait_port $UP
# The server's own process (under WRAP, the wrapper's child).
VPID=$(pgrep -n -f "$BIN serve")

phase() {
  awk -v phase="$1" '
    /^VmRSS/ { rss = $2 } /^VmHWM/ { hwm = $2 } /^RssAnon/ { anon = $2 } /^RssFile/ { file = $2 }
    /^Threads/ { threads = $2 }
    END { printf "%-12s RSS %6.1f MB   peak %6.1f MB   anonymous %6.1f MB   file %6.1f MB   threads %d\n",
      phase, rss / 1024, hwm / 1024, anon / 1024, file / 1024, threads }' "/proc/$VPID/status"
  if [ "${SMAPS:-0}" = 1 ]; then
    # Resident KB per mapping (anonymous ones named by their address range), largest first.
    awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon " $1 "]" : $6) }
         /^Rss:/ { rss[name] += $2 }
         END { for (n in rss) if (rss[n] >= 1024) printf "    %8.1f MB  %s\n", rss[n] / 1024, n }' \
      "/proc/$VPID/smaps" | sort -rn | head -n 12
  fi
}
phase start
bench_vouchers 50 "$WORK/mail" > "$WORK/keys"
head -n 1 "$WORK/keys" > "$WORK/hot"
phase set-up
KEYS_FILE="$WORK/keys" wrk -t2 -c64 -d"${DURATION}s" -s bench/wrk.lua "http://127.0.0.1:$PROXY" > /dev/null
phase "c=64"
KEYS_FILE="$WORK/hot" wrk -t2 -c64 -d"${DURATION}s" -s bench/wrk.lua "http://127.0.0.1:$PROXY" > /dev/null
phase "hot voucher"
"$TOOL" streams --url "http://127.0.0.1:$PROXY/v1/chat/completions" --key "$(cat "$WORK/hot")" --n "$STREAMS" > /dev/null
phase "$STREAMS streams"
# Under WRAP the server must end on its own for the profiler to write its file.
kill -TERM "$VPID" 2>/dev/null || true
