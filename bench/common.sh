# Shared by bench/run.sh and bench/memory.sh (sourced, from the repository's root): the open-file
# limit raised, the builds (VOUCHERD_BIN measures another build of voucherd, a before/after
# comparison, in the same harness), a work folder that is removed on exit with every process
# the script started (add their pids to PIDS), wait_port, and the set-up every bench's voucherd
# shares (bench_config, bench_env, bench_vouchers).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ -n "${VOUCHERD_BIN:-}" ]; then
  cargo build --release -q -p voucherd-bench
  BIN=$VOUCHERD_BIN
else
  cargo build --release -q -p voucherd -p voucherd-bench
  BIN=target/release/voucherd
fi
TOOL=target/release/voucherd-bench
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# What every bench's voucherd shares: its settings, its environment, an administrator and the
# vouchers the load runs on. The ports are the calling script's UP (the fake provider) and
# PROXY (voucherd).
ADMIN_PASSWORD='benchmark admin password'
# bench_config MAIL_DIR [LINE...] > FILE: the fake provider's model priced, applicants' mail
# delivered to MAIL_DIR (they confirm their email with the code in it), and LINEs added.
bench_config() {
  echo "mail_dir = \"$1\""
  shift
  # The setup signs in every applicant from one address within seconds.
  echo "sign_in_attempts_per_address = 0"
  printf '%s\n' "$@"
  printf '[prices.bench-model]\ninput_per_million = "0.10"\ncached_input_per_million = "0.05"\noutput_per_million = "0.40"\n'
}
# bench_env CONFIG_FILE DATABASE_URL: voucherd's environment, then an administrator created.
bench_env() {
  export VOUCHERD_CONFIG="$1" DATABASE_URL="$2" VOUCHERD_BIND="127.0.0.1:$PROXY" \
    VOUCHERD_JWT_SECRET="bench-secret-0123456789abcdefghijklmnop" VOUCHERD_UPSTREAM_URL="http://127.0.0.1:$UP/v1" \
    VOUCHERD_UPSTREAM_API_KEY="sk-bench" VOUCHERD_METRICS_TOKEN="bench-metrics" RUST_LOG=warn
  echo "$ADMIN_PASSWORD" | "$BIN" create-admin --email admin@bench.test > /dev/null
}
# bench_vouchers N MAIL_DIR > KEYS: N approved vouchers on the running voucherd, a key each.
bench_vouchers() {
  "$TOOL" setup --api "http://127.0.0.1:$PROXY" --admin-email admin@bench.test --admin-password "$ADMIN_PASSWORD" \
    --vouchers "$1" --mail-dir "$2" 2> "$WORK/setup.err" || { cat "$WORK/setup.err" >&2; exit 1; }
}
# metric NAME: the running voucherd's /metrics value `voucherd_NAME` (on the calling script's
# PROXY port; bench_env sets the metrics token).
metric() { curl -s -H "Authorization: Bearer bench-metrics" "http://127.0.0.1:$PROXY/metrics" | awk -v m="voucherd_$1" '$1 == m { print $2 }'; }
