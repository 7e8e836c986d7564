#!/usr/bin/env bash
# The report benchmark: does a semi-annual report's cost stay flat as raw usage grows? On one
# PostgreSQL database, in one run: a programme of VOUCHERS vouchers set up through the API, then
# 100,000 usage rows over the half-year (with their daily rollups, as the proxy's write path
# keeps them), the report timed; then 900,000 more rows on the same vouchers and days, the
# report timed again. Prints both medians and their ratio (target <= 1.2).
#
#   bash bench/report.sh          # RUNS=5 timings per size by default
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres) with psql.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
VOUCHERS=${VOUCHERS:-200}
PG_ADMIN=${VOUCHERD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
DB="${PG_ADMIN%/*}/voucherd_report_bench"
PORT=18200
ADMIN_PASSWORD='benchmark admin password'

cargo build --release -q -p voucherd -p voucherd-bench
BIN=target/release/voucherd
TOOL=target/release/voucherd-bench
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS voucherd_report_bench WITH (FORCE)" -c "CREATE DATABASE voucherd_report_bench"
export DATABASE_URL="$DB" VOUCHERD_BIND="127.0.0.1:$PORT" RUST_LOG=warn \
  VOUCHERD_JWT_SECRET="bench-secret-0123456789abcdefghijklmnop"
echo "$ADMIN_PASSWORD" | "$BIN" create-admin --email admin@bench.test > /dev/null
"$BIN" serve > "$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
echo "setting up $VOUCHERS vouchers..." >&2
"$TOOL" setup --api "http://127.0.0.1:$PORT" --admin-email admin@bench.test \
  --admin-password "$ADMIN_PASSWORD" --vouchers "$VOUCHERS" > /dev/null
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

# Usage rows spread over the vouchers and the 183 days of April–September, and the same rows
# added to the daily rollups (what the proxy's write path does in its own transaction).
add_usage() { # FIRST LAST
  psql "$DB" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE batch AS
WITH v AS (SELECT row_number() OVER (ORDER BY v.id) - 1 AS n, v.id AS voucher_id, k.id AS key_id
           FROM vouchers v JOIN api_keys k ON k.voucher_id = v.id),
     c AS (SELECT count(*) AS n FROM v)
SELECT g, v.voucher_id, v.key_id, TIMESTAMP '2026-04-01 09:00' + (g % 183) * INTERVAL '1 day' AS at
FROM generate_series($1, $2) g CROSS JOIN c JOIN v ON v.n = g % c.n;
INSERT INTO usage_records (id, request_id, voucher_id, api_key_id, model, price_id,
    input_per_million, cached_input_per_million, output_per_million, prompt_tokens,
    cached_prompt_tokens, completion_tokens, cost, hold_id, post_id, upstream_status, created_at)
SELECT 'bench-' || g, 'bench-req-' || g, voucher_id, key_id, 'gpt-4o-mini',
    (SELECT id FROM prices LIMIT 1), 120000, 60000, 480000, 12, 0, 3, 3,
    (SELECT id FROM transfers LIMIT 1), NULL, 200, at
FROM batch;
INSERT INTO usage_daily (day, voucher_id, model, requests, prompt_tokens, cached_prompt_tokens,
    completion_tokens, cost)
SELECT at::date, voucher_id, 'gpt-4o-mini', count(*), 12 * count(*), 0, 3 * count(*), 3 * count(*)
FROM batch GROUP BY 1, 2
ON CONFLICT (day, voucher_id, model) DO UPDATE SET
    requests = usage_daily.requests + excluded.requests,
    prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
    cached_prompt_tokens = usage_daily.cached_prompt_tokens + excluded.cached_prompt_tokens,
    completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
    cost = usage_daily.cost + excluded.cost;
DROP TABLE batch;
ANALYZE;
SQL
}

# Median, over RUNS generations, of the time the report itself takes (reading, computing,
# rendering and saving; as `voucherd report` states it, without process start-up).
time_report() {
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    psql "$DB" -q -c "DELETE FROM reports"
    times+=("$("$BIN" report --kind semi-annual --from 2026-04-01 --to 2026-09-30 2>&1 >/dev/null \
      | awk '/report: done in/ { print $4 }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

echo "100,000 usage rows..." >&2
add_usage 1 100000
SMALL=$(time_report)
ROLLUPS=$(psql "$DB" -At -c "SELECT count(*) FROM usage_daily")
echo "1,000,000 usage rows..." >&2
add_usage 100001 1000000
LARGE=$(time_report)
ROWS=$(psql "$DB" -At -c "SELECT count(*) FROM usage_records")
psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS voucherd_report_bench WITH (FORCE)"

echo
echo "report benchmark: semi-annual report, $VOUCHERS vouchers, $ROLLUPS daily rollup rows, median of $RUNS runs, $(date -u +%Y-%m-%d)"
printf '%-34s %10s\n' "usage rows" "report (ms)"
printf '%-34s %10s\n' "100,000" "$SMALL"
printf '%-34s %10s\n' "$ROWS" "$LARGE"
awk -v a="$LARGE" -v b="$SMALL" 'BEGIN { printf "ratio 1M / 100k: %.2f   target <= 1.20\n", a / b }'
