#!/usr/bin/env bash
# The proxy benchmark, in one run and on this machine: a fast fake provider, the metering
# proxy on SQLite and on PostgreSQL, and nginx proxy_pass to the same provider, all driven by
# wrk. Prints each figure with its ratio to nginx measured in the same run, and the targets.
#
#   bash bench/run.sh            # DURATION=10 seconds per phase by default
#   VOUCHERD_BIN=path/to/voucherd bash bench/run.sh   # measure that build instead
#   EXTRA_CONFIG='lease_max_age_ms = 5000' bash bench/run.sh   # another setting, same build
#
# Needs: nginx (nginx-light), wrk, PostgreSQL on 127.0.0.1:5432 (user postgres) with pgbench.
# Installs nginx-light and wrk with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
VOUCHERS=${VOUCHERS:-100}
STREAMS=${STREAMS:-1000}
PG_ADMIN=${VOUCHERD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_BASE=${PG_ADMIN%/*}
UP=18081 NGINX=18090 PROXY=18100 PASS=18095

for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk; }
done
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | head -n 1)
# shellcheck source=bench/common.sh
. bench/common.sh

# Statements the running voucherd has sent to its database (its /metrics counter).
statements() { metric db_statements_total; }

# wrk's latency lines are in us, ms or s: print milliseconds.
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
# run_wrk NAME URL [KEYS_FILE] -> sets RPS_NAME, P50_NAME, P99_NAME
run_wrk() {
  local out
  out=$(KEYS_FILE=${3:-} wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/wrk.lua "$2")
  local non2xx
  non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  [ -n "$non2xx" ] && echo "  ($1: $non2xx non-2xx responses)" >&2
  printf -v "RPS_$1" '%s' "$(echo "$out" | awk '/Requests\/sec/ { print $2 }')"
  printf -v "REQS_$1" '%s' "$(echo "$out" | awk '/requests in/ { print $1 }')"
  printf -v "P50_$1" '%s' "$(ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")"
  printf -v "P99_$1" '%s' "$(ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")"
}

# run_wrk1 NAME URL [KEYS_FILE]: one connection -> sets P50_1_NAME, P99_1_NAME
run_wrk1() {
  local out
  out=$(KEYS_FILE=${3:-} wrk -t1 -c1 -d"${DURATION}s" --latency -s bench/wrk.lua "$2")
  printf -v "P50_1_$1" '%s' "$(ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")"
  printf -v "P99_1_$1" '%s' "$(ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")"
}

"$TOOL" upstream --port $UP --chunk-delay-ms 20 --chunks 50 --workers 1 > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
cat > "$WORK/nginx.conf" <<NGINX
daemon off;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  upstream provider { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX;
    location / {
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -p "$WORK" -c "$WORK/nginx.conf" &
PIDS+=($!)
wait_port $UP; wait_port $NGINX

echo "direct to the fake provider..." >&2
run_wrk direct "http://127.0.0.1:$UP"
echo "nginx proxy_pass..." >&2
run_wrk nginx "http://127.0.0.1:$NGINX"
echo "one client: direct and nginx..." >&2
run_wrk1 direct "http://127.0.0.1:$UP"
run_wrk1 nginx "http://127.0.0.1:$NGINX"
# The same stack without the product: the ceiling any actix-web + reqwest proxy reaches here.
"$TOOL" passthrough --port $PASS --upstream "http://127.0.0.1:$UP" > "$WORK/passthrough.log" 2>&1 &
PASS_PID=$!
PIDS+=($PASS_PID)
wait_port $PASS
echo "actix-web + the proxy's upstream client, passthrough (no metering)..." >&2
run_wrk pass "http://127.0.0.1:$PASS"
# The HTTP core's own share of the one-client latency, beside nginx's.
run_wrk1 pass "http://127.0.0.1:$PASS"
kill "$PASS_PID"; wait "$PASS_PID" 2>/dev/null || true
read -r _ NGINX_STREAM_P99 _ < <("$TOOL" streams --url "http://127.0.0.1:$NGINX/v1/chat/completions" --key none --n 100)

for backend in sqlite postgres; do
  # Every job on its default schedule, as in production. Applicants confirm their email with
  # the code the worker delivers to the mail folder.
  # The database pool at the product's default size (16): the proxy's hot path writes through
  # the usage writer's own connection and reserves from leases in memory, so the pool serves
  # only leases opening and closing; 32 connections measured the same throughput on both
  # backends and cost about 8 MB of RSS (each SQLite connection's cache and each pool
  # thread's stack and allocator cache).
  bench_config "$WORK/mail-$backend" "${EXTRA_CONFIG:-}" > "$WORK/voucherd.toml"

  if [ "$backend" = sqlite ]; then
    DB="sqlite://$WORK/bench.db"
  else
    psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS voucherd_bench WITH (FORCE)" -c "CREATE DATABASE voucherd_bench"
    DB="$PG_BASE/voucherd_bench"
  fi
  bench_env "$WORK/voucherd.toml" "$DB"
  "$BIN" serve > "$WORK/voucherd-$backend.log" 2>&1 &
  VPID=$!
  PIDS+=($VPID)
  wait_port $PROXY
  echo "setting up $VOUCHERS vouchers on $backend..." >&2
  bench_vouchers "$VOUCHERS" "$WORK/mail-$backend" > "$WORK/keys-$backend"
  head -n 1 "$WORK/keys-$backend" > "$WORK/hot-$backend"
  echo "voucherd on $backend: many vouchers..." >&2
  before=$(statements); batches_before=$(metric usage_batches_total); rows_before=$(metric usage_batch_rows_total)
  run_wrk "many_$backend" "http://127.0.0.1:$PROXY" "$WORK/keys-$backend"
  printf -v "BATCH_$backend" '%s' "$(awk -v b="$(( $(metric usage_batches_total) - batches_before ))" -v r="$(( $(metric usage_batch_rows_total) - rows_before ))" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.1f rows in %d group commits", r / b, b }')"
  printf -v "STMTS_$backend" '%s' "$(awk -v s="$(( $(statements) - before ))" -v r="$(eval echo "\$REQS_many_$backend")" 'BEGIN { if (r + 0 == 0) print "n/a"; else printf "%.2f", s / r }')"
  echo "voucherd on $backend: one client..." >&2
  run_wrk1 "many_$backend" "http://127.0.0.1:$PROXY" "$WORK/keys-$backend"
  echo "voucherd on $backend: one hot voucher..." >&2
  run_wrk "hot_$backend" "http://127.0.0.1:$PROXY" "$WORK/hot-$backend"
  read -r _ p99 _ < <("$TOOL" streams --url "http://127.0.0.1:$PROXY/v1/chat/completions" --key "$(cat "$WORK/hot-$backend")" --n 100)
  printf -v "STREAM_P99_$backend" '%s' "$p99"
  echo "voucherd on $backend: $STREAMS concurrent slow streams..." >&2
  read -r _ _ failed < <("$TOOL" streams --url "http://127.0.0.1:$PROXY/v1/chat/completions" --key "$(cat "$WORK/hot-$backend")" --n "$STREAMS")
  printf -v "STREAM_FAILED_$backend" '%s' "$failed"
  printf -v "RSS_$backend" '%s' "$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' /proc/$VPID/status)"
  # SQLite's write-ahead log after every load phase: it must stay bounded (restarted past 64 MB).
  [ "$backend" = sqlite ] && WAL_MB=$(awk -v b="$(stat -c %s "$WORK/bench.db-wal" 2>/dev/null || echo 0)" 'BEGIN { printf "%.1f", b / 1048576 }')
  kill "$VPID"; wait "$VPID" 2>/dev/null || true
  # The backend's own commit latency at one client, on the same database: the durability
  # rule's floor for a metered request's added latency.
  read -r c50 c99 < <("$TOOL" commit --database-url "$DB")
  printf -v "COMMIT_P50_$backend" '%s' "$c50"
  printf -v "COMMIT_P99_$backend" '%s' "$c99"
done

echo "pgbench: single-row UPDATE..." >&2
psql "$PG_ADMIN" -q -c "DROP TABLE IF EXISTS bench_row" -c "CREATE TABLE bench_row (id int PRIMARY KEY, v bigint)" -c "INSERT INTO bench_row VALUES (1, 0)"
echo 'UPDATE bench_row SET v = v + 1 WHERE id = 1;' > "$WORK/update.sql"
PG_TPS=$("$PGBENCH" -n -c "$CONNS" -j 2 -T "$DURATION" -f "$WORK/update.sql" "$PG_ADMIN" 2>/dev/null | awk '/^tps/ { print $3; exit }')
psql "$PG_ADMIN" -q -c "DROP TABLE bench_row" -c "DROP DATABASE IF EXISTS voucherd_bench WITH (FORCE)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
verdict() { awk "BEGIN { print ($1) ? \"yes\" : \"NO\" }"; }
ADD50_NGINX=$(minus "$P50_nginx" "$P50_direct")
# nginx's own addition at one client is within wrk's resolution: a negative difference is 0.
ADD50_1_NGINX=$(awk -v a="$P50_1_nginx" -v b="$P50_1_direct" 'BEGIN { d = a - b; if (d < 0) d = 0; printf "%.3f", d }')
ADD50_1_PASS=$(minus "$P50_1_pass" "$P50_1_direct"); ADD99_1_PASS=$(minus "$P99_1_pass" "$P99_1_direct")
echo
echo "voucherd proxy benchmark: $DURATION s per phase, $CONNS connections, $VOUCHERS vouchers, $(nproc) cores, $(date -u +%Y-%m-%d)"
printf 'reference, same run: direct %s req/s; nginx %s req/s, added p50 %s ms at c=%s, %s ms at c=1; pgbench single-row UPDATE %s TPS\n' \
  "$RPS_direct" "$RPS_nginx" "$ADD50_NGINX" "$CONNS" "$ADD50_1_NGINX" "$PG_TPS"
printf '1. passthrough (actix-web + the proxy'"'"'s client): %s req/s = %sx nginx   target >= 0.80x: %s\n' \
  "$RPS_pass" "$(ratio "$RPS_pass" "$RPS_nginx")" "$(verdict "$RPS_pass >= 0.8 * $RPS_nginx")"
printf '   passthrough at c=1: added p50 %s ms, p99 %s ms (nginx: p50 %s ms)\n' "$ADD50_1_PASS" "$ADD99_1_PASS" "$ADD50_1_NGINX"
for b in sqlite postgres; do
  rps=RPS_many_$b; hot=RPS_hot_$b; p50=P50_many_$b; p99=P99_many_$b
  p501=P50_1_many_$b; p991=P99_1_many_$b; c50=COMMIT_P50_$b; c99=COMMIT_P99_$b
  st=STMTS_$b; rss=RSS_$b; sp=STREAM_P99_$b; sf=STREAM_FAILED_$b
  add50=$(minus "${!p50}" "$P50_direct"); add501=$(minus "${!p501}" "$P50_1_direct"); add991=$(minus "${!p991}" "$P99_1_direct")
  echo "voucherd on $b (commit of one small write at c=1: p50 ${!c50} ms, p99 ${!c99} ms)"
  printf '  2. metered, c=%s: %s req/s = %sx passthrough, %sx nginx   target >= 0.80x and >= 0.60x: %s\n' "$CONNS" "${!rps}" \
    "$(ratio "${!rps}" "$RPS_pass")" "$(ratio "${!rps}" "$RPS_nginx")" "$(verdict "${!rps} >= 0.8 * $RPS_pass && ${!rps} >= 0.6 * $RPS_nginx")"
  printf '  3. added p50 at c=1: %s ms   target <= 2 x %s + %s = %s: %s\n' "$add501" "$ADD50_1_NGINX" "${!c50}" \
    "$(calc "2 * $ADD50_1_NGINX + ${!c50}")" "$(verdict "$add501 <= 2 * $ADD50_1_NGINX + ${!c50}")"
  printf '     added p99 at c=1: %s ms   target <= 1 + %s = %s: %s\n' "$add991" "${!c99}" "$(calc "1 + ${!c99}")" "$(verdict "$add991 <= 1 + ${!c99}")"
  printf '     added p50 at c=%s: %s ms (p99 %s ms)   target <= 2 x %s: %s\n' "$CONNS" "$add50" "$(minus "${!p99}" "$P99_direct")" "$ADD50_NGINX" \
    "$(verdict "$add50 <= 2 * $ADD50_NGINX")"
  if [ $b = postgres ]; then pg="; >= 10x pgbench ($(ratio "${!hot}" "$PG_TPS")x): $(verdict "${!hot} >= 10 * $PG_TPS")"; else pg=""; fi
  printf '  4. one hot voucher: %s req/s = %sx of 2   target >= 0.80x: %s%s\n' "${!hot}" "$(ratio "${!hot}" "${!rps}")" \
    "$(verdict "${!hot} >= 0.8 * ${!rps}")" "$pg"
  bt=BATCH_$b
  printf '  5. database statements per request, c=%s: %s (%s)   target <= 0.1: %s\n' "$CONNS" "${!st}" "${!bt}" "$(verdict "${!st} <= 0.1")"
  [ $b = sqlite ] && echo "  SQLite write-ahead log after the load: ${WAL_MB} MB (restarted once it passes 64 MB)"
  printf '  6. peak RSS, %s streams: %s MB (failed: %s)   target <= 100: %s; inter-chunk p99 %s ms vs nginx %s   target within 1 ms: %s\n' \
    "$STREAMS" "${!rss}" "${!sf}" "$(verdict "${!rss} <= 100")" "${!sp}" "$NGINX_STREAM_P99" "$(verdict "${!sp} <= $NGINX_STREAM_P99 + 1")"
done
