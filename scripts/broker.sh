#!/usr/bin/env bash
# The Kafka-compatible test broker for the end-to-end suite: nisshi 0.8.1 from crates.io.
#
#   scripts/broker.sh install          install nisshi into ~/.cargo/bin when missing (~25 min the first time)
#   scripts/broker.sh start [PORT]     start on 127.0.0.1:PORT (default 19092), wait until it answers
#   scripts/broker.sh stop [PORT]      stop the broker started by `start` on PORT
#   scripts/broker.sh add-user PORT NAME PASSWORD_FILE
#                                      create a SCRAM-SHA-512 user (plaintext broker only)
#
# STORAGE=memory (default) or STORAGE=sqlite (persistent: topics, data, users and
# committed offsets survive a restart; data under target/e2e/broker-<port>/). FRESH=1
# deletes that data before starting. The pid and log live in
# target/e2e/broker-<port>.{pid,log}.
#
# Security (the security scenario): TLS_CERT=FILE TLS_KEY=FILE make the listener speak
# TLS only; AUTH=1 requires SASL (SCRAM) logins and needs STORAGE=sqlite, where the users
# live. ADVERTISED_HOST (default 127.0.0.1) is the host name the broker gives clients in
# its metadata: the one its certificate must hold. nisshi's `user create` and `topic
# create` speak plaintext only, so create users and topics on a plaintext start, stop,
# and start again on the same port and data with TLS and AUTH.
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
  local advertised=${ADVERTISED_HOST:-127.0.0.1} security=() mode=$storage
  if [ -n "${TLS_CERT:-}${TLS_KEY:-}" ]; then
    if [ ! -f "${TLS_CERT:-}" ] || [ ! -f "${TLS_KEY:-}" ]; then
      echo "TLS_CERT and TLS_KEY must both name files (TLS_CERT='${TLS_CERT:-}', TLS_KEY='${TLS_KEY:-}')" >&2
      return 1
    fi
    # Absolute: the broker runs in its data directory.
    security+=(--cert "$(realpath "$TLS_CERT")" --key "$(realpath "$TLS_KEY")")
    mode+=", TLS"
  fi
  if [ "${AUTH:-0}" = 1 ]; then
    if [ "$storage" != sqlite ]; then
      echo "AUTH=1 needs STORAGE=sqlite (nisshi keeps its users there)" >&2
      return 1
    fi
    security+=(--authentication)
    mode+=", SASL"
  fi
  if [ "${FRESH:-0}" = 1 ]; then rm -rf "$dir"; : > "$STATE/broker-$port.log"; fi
  mkdir -p "$dir"
  # A path relative to the broker's working directory.
  if [ "$storage" = sqlite ]; then engine="sqlite://nisshi.db"; fi
  (cd "$dir" && exec "$(nisshi_bin)" broker --storage-engine="$engine" \
      --listener-url="tcp://127.0.0.1:$port" --advertised-listener-url="tcp://$advertised:$port" \
      --group-initial-rebalance-delay 0s ${security[@]+"${security[@]}"}) >> "$STATE/broker-$port.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$STATE/broker-$port.pid"
  wait_port "$port" "$pid"
  echo "broker up on 127.0.0.1:$port ($mode; advertised as $advertised:$port), pid $pid"
}

# A SCRAM-SHA-512 user, through the broker on PORT (plaintext, no AUTH: nisshi's client
# speaks nothing else). The password is read from a file, not given on the command line
# of this script (nisshi itself takes it as an argument).
add_user() {
  local port=$1 name=$2 password_file=$3
  [ -f "$password_file" ] || { echo "no password file $password_file" >&2; return 1; }
  local password; password=$(head -n 1 "$password_file")
  "$(nisshi_bin)" user create --broker "tcp://127.0.0.1:$port" --mechanism scram512 \
    "$name" "$password" >> "$STATE/broker-$port.log" 2>&1 || {
    echo "cannot create user $name on 127.0.0.1:$port; log:" >&2
    tail -n 20 "$STATE/broker-$port.log" >&2 || true
    return 1
  }
  echo "user $name created on 127.0.0.1:$port (SCRAM-SHA-512)"
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
  add-user)
    [ $# -eq 4 ] || { echo "usage: $0 add-user PORT NAME PASSWORD_FILE" >&2; exit 2; }
    add_user "$2" "$3" "$4" ;;
  *) echo "usage: $0 install | start [PORT] | stop [PORT] | add-user PORT NAME PASSWORD_FILE" >&2; exit 2 ;;
esac
