#!/usr/bin/env bash
# End-to-end suite: the vitalwatch binary as a process against a real Kafka-compatible
# broker (nisshi), broken on purpose: SIGKILL cycles, SIGTERM under load, scaling, an
# alert-topic outage, hostile input, a broker restart, TLS and SASL. See docs/e2e.md.
#
#   scripts/e2e.sh                  every scenario
#   scripts/e2e.sh sigkill          only the tests whose name contains "sigkill"
#
# Installs the openssl CLI (the security scenario's certificates) and nisshi 0.8.1 when
# missing (~25 min on 2 cores), builds the release binary, starts a broker on
# 127.0.0.1:$VW_E2E_PORT (default 19092, memory storage; the broker-restart scenario
# starts its own on $VW_E2E_SQLITE_PORT, default 19093, with sqlite storage, and the
# security scenario one with TLS and SASL on $VW_E2E_TLS_PORT, default 19094), runs
# `cargo test --test e2e -- --ignored` against that release binary (the harness itself
# is the debug build `cargo test` already made), stops the brokers and prints the
# summary table (target/e2e/summary.tsv). Logs of every process are under
# target/e2e/logs/<scenario>/, the brokers' under target/e2e/broker-<port>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
STATE=target/e2e
mkdir -p "$STATE"
started=$SECONDS

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The first port from $1 up that nothing listens on.
free_port() {
  local p=$1
  while port_open "$p"; do p=$((p + 1)); done
  echo "$p"
}

scripts/ensure-build-deps.sh e2e
scripts/broker.sh install
echo "== cargo build --release"
cargo build --release

PORT=$(free_port "${VW_E2E_PORT:-19092}")
SQLITE_PORT=$(free_port "${VW_E2E_SQLITE_PORT:-19093}")
if [ "$SQLITE_PORT" = "$PORT" ]; then SQLITE_PORT=$(free_port $((PORT + 1))); fi
TLS_PORT=$(free_port "${VW_E2E_TLS_PORT:-19094}")
while [ "$TLS_PORT" = "$PORT" ] || [ "$TLS_PORT" = "$SQLITE_PORT" ]; do
  TLS_PORT=$(free_port $((TLS_PORT + 1)))
done
cleanup() {
  scripts/broker.sh stop "$PORT" || true
  scripts/broker.sh stop "$SQLITE_PORT" > /dev/null || true
  scripts/broker.sh stop "$TLS_PORT" > /dev/null || true
}
trap cleanup EXIT
FRESH=1 scripts/broker.sh start "$PORT"
export VW_E2E_BROKERS="127.0.0.1:$PORT" VW_E2E_SQLITE_PORT="$SQLITE_PORT" VW_E2E_TLS_PORT="$TLS_PORT"
export VW_E2E_SUMMARY="$PWD/$STATE/summary.tsv"
rm -f "$VW_E2E_SUMMARY"

# The service under test is the release binary; the harness (feeders, oracles, readers)
# needs no optimisation, and its debug build is the one `cargo test` makes anyway.
# cargo builds into $CARGO_TARGET_DIR when it is set (a shared target directory).
export VW_E2E_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/vitalwatch"
echo "== cargo test --test e2e -- --ignored --test-threads=1 --nocapture $* (VW_E2E_BIN=$VW_E2E_BIN)"
set +e
cargo test --test e2e -- --ignored --test-threads=1 --nocapture "$@"
rc=$?
set -e

echo
echo "== end-to-end summary ($(( SECONDS - started )) s in all, broker nisshi 0.8.1)"
if [ -f "$VW_E2E_SUMMARY" ]; then
  awk -F'\t' '
    { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR; if (NF > nf) nf = NF }
    END {
      for (r = 1; r <= n; r++) {
        line = ""
        for (i = 1; i < nf; i++) line = line sprintf("%-" w[i] "s  ", cell[r, i])
        print line cell[r, nf]
      }
    }' "$VW_E2E_SUMMARY"
else
  echo "no scenario ran"
fi
exit $rc
