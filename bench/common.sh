# Shared by bench/run.sh and bench/memory.sh (sourced, from the repository's root): the open-file
# limit raised, the builds (VOUCHERD_BIN measures another build of voucherd, a before/after
# comparison, in the same harness), a work folder that is removed on exit with every process
# the script started (add their pids to PIDS), and wait_port.
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
