#!/usr/bin/env bash
# The Kafka-compatible test broker for the end-to-end suite: nisshi 0.8.1 from crates.io.
#
#   scripts/broker.sh install          install nisshi into ~/.cargo/bin when missing (~25 min the first time)
#   scripts/broker.sh start [PORT]     start on 127.0.0.1:PORT (default 19092), wait until it answers
#   scripts/broker.sh stop [PORT]      stop the broker started by `start` on PORT
#
# STORAGE=memory (default) or STORAGE=sqlite (persistent: topics, data and committed
# offsets survive a restart; data under target/e2e/broker-<port>/). FRESH=1 deletes that
# data before starting. The pid and log live in target/e2e/broker-<port>.{pid,log}.
set -euo pipefail
cd "$(dirname "$0")/.."
NISSHI_VERSION=0.8.1
STATE=target/e2e
mkdir -p "$STATE"

nisshi_bin() { command -v nisshi 2>/dev/null || echo "$HOME/.cargo/bin/nisshi"; }

have_nisshi() {
  local bin; bin=$(nisshi_bin)
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$NISSHI_VERSION"
}

install() {
  if have_nisshi; then
    echo "nisshi $NISSHI_VERSION present: $(nisshi_bin)"
    return
  fi
  echo "installing nisshi $NISSHI_VERSION (takes ~25 minutes on 2 cores the first time)"
  # It declares Rust 1.96 but builds on 1.95. dynostore: memory:// storage; libsql:
  # sqlite:// storage, for the broker-restart scenario.
  cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version \
    --no-default-features --features dynostore,libsql
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until the broker answers on the port; fails early if it exits.
wait_port() {
  local port=$1 pid=$2 deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    if port_open "$port"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "broker exited during start-up; log:" >&2
      tail -n 50 "$STATE/broker-$port.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  echo "broker did not open 127.0.0.1:$port within 60 s; log:" >&2
  tail -n 50 "$STATE/broker-$port.log" >&2 || true
  return 1
}

start() {
  local port=${1:-19092} storage=${STORAGE:-memory}
  install
  if port_open "$port"; then
    echo "127.0.0.1:$port is already in use; choose another port" >&2
    return 1
  fi
  local engine="memory://nisshi/"
  local dir="$STATE/broker-$port"
  if [ "${FRESH:-0}" = 1 ]; then rm -rf "$dir"; : > "$STATE/broker-$port.log"; fi
  mkdir -p "$dir"
  # A path relative to the broker's working directory.
  if [ "$storage" = sqlite ]; then engine="sqlite://nisshi.db"; fi
  (cd "$dir" && exec "$(nisshi_bin)" broker --storage-engine="$engine" \
      --listener-url="tcp://127.0.0.1:$port" --advertised-listener-url="tcp://127.0.0.1:$port" \
      --group-initial-rebalance-delay 0s) >> "$STATE/broker-$port.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$STATE/broker-$port.pid"
  wait_port "$port" "$pid"
  echo "broker up on 127.0.0.1:$port ($storage), pid $pid"
}

stop() {
  local port=${1:-19092}
  local pidfile="$STATE/broker-$port.pid"
  [ -f "$pidfile" ] || { echo "no broker on $port"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "broker on $port did not stop on SIGTERM within 10 s: SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "broker on $port stopped"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-19092}" ;;
  stop) stop "${2:-19092}" ;;
  *) echo "usage: $0 install | start [PORT] | stop [PORT]" >&2; exit 2 ;;
esac
