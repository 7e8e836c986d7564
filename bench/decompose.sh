#!/usr/bin/env bash
# What each part of a SQLite usage batch costs the metered throughput (bench/run.sh's target 2):
# the proxy on SQLite with 50 vouchers at c=64, first as it is, then with parts of the batch's
# work taken out of the bench's own database while the server runs (the trigger is replaced,
# an index dropped; the server prepares its statement again). Each variant is a fresh server
# and database; each prints wrk's throughput twice. The variants are for measuring only: a
# database without them would lose the per-voucher usage lists, the rollups or the leases'
# totals.
#
#   bash bench/decompose.sh             # DURATION=5 seconds per round
#   VOUCHERD_BIN=path/to/voucherd bash bench/decompose.sh
#
# Needs wrk; Python's sqlite3 module applies the changes.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
UP=18081 PROXY=18100
BATCH_SQL=migrations/sqlite/2026-12-07-000025_usage_batch_rows/up.sql

command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
# shellcheck source=bench/common.sh
. bench/common.sh

"$TOOL" upstream --port $UP --chunk-delay-ms 20 --chunks 50 --workers 1 > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_port $UP
bench_config "$WORK/mail" > "$WORK/voucherd.toml"

# The batch trigger of migration 000025 up to (not including) the comment that starts PART.
trigger_before() {
  python3 - "$BATCH_SQL" "$1" <<'PY'
import sys
sql = open(sys.argv[1]).read()
trigger = sql[sql.index("CREATE TRIGGER"):]
print(trigger[: trigger.index(sys.argv[2])] + "END;")
PY
}
cat > "$WORK/no-voucher-index.sql" <<'SQL'
DROP INDEX usage_records_voucher;
SQL
{ cat "$WORK/no-voucher-index.sql"; echo "DROP TRIGGER usage_batch_rows_insert;"; trigger_before "    -- Live usage's daily rollup"; } > "$WORK/no-rollups.sql"
{ cat "$WORK/no-voucher-index.sql"; echo "DROP TRIGGER usage_batch_rows_insert;"; trigger_before "    -- The lease's running total"; } > "$WORK/rows-only.sql"

variant() {
  local name=$1 sql=${2:-}
  rm -rf "$WORK/db" "$WORK/mail"; mkdir -p "$WORK/db"
  bench_env "$WORK/voucherd.toml" "sqlite://$WORK/db/bench.db"
  "$BIN" serve > "$WORK/voucherd.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_port $PROXY
  bench_vouchers 50 "$WORK/mail" > "$WORK/keys"
  if [ -n "$sql" ]; then
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.commit()' \
      "$WORK/db/bench.db" "$sql"
  fi
  local rates=()
  for _ in 1 2; do
    rates+=("$(KEYS_FILE="$WORK/keys" wrk -t2 -c64 -d"${DURATION}s" -s bench/wrk.lua "http://127.0.0.1:$PROXY" | awk '/Requests\/sec/ { print $2 }')")
  done
  printf '%-56s %s and %s req/s\n' "$name" "${rates[0]}" "${rates[1]}"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "SQLite, 50 vouchers, c=64, $DURATION s a round, $(nproc) cores, $(date -u +%Y-%m-%d)"
variant "as shipped"
variant "without the usage-by-voucher index" "$WORK/no-voucher-index.sql"
variant "and without the daily rollups" "$WORK/no-rollups.sql"
variant "rows only (no leases' totals, keys' last use, rollups)" "$WORK/rows-only.sql"
