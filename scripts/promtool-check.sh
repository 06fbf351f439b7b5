#!/usr/bin/env bash
# Lints a live /metrics scrape of vitalwatch with `promtool check metrics`.
#
# Runs the pipeline on an in-process mock cluster with traffic (examples/serve_metrics.rs),
# waits until every metric of design.md's table is in the scrape, and fails on any problem
# promtool reports. Installs Debian's `prometheus` package (which ships promtool) when
# missing. Bounded: the example stops by itself; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVE_SECONDS=${SERVE_SECONDS:-60}   # upper bound on how long the example runs
WAIT_SECONDS=${WAIT_SECONDS:-45}     # how long to wait for every metric to appear

METRICS=(
  vitalwatch_messages_consumed_total vitalwatch_messages_invalid_total
  vitalwatch_alerts_emitted_total vitalwatch_dlq_published_total vitalwatch_sink_errors_total
  vitalwatch_processing_duration_seconds vitalwatch_event_age_seconds
  vitalwatch_worker_queue_depth vitalwatch_inflight_messages vitalwatch_consumer_lag
  vitalwatch_committed_offset vitalwatch_rebalances_total vitalwatch_workers
  vitalwatch_build_info
)

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "promtool-check: installing Debian package $2 (for $1)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need promtool prometheus
need curl curl

work=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --example serve_metrics
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
RUST_LOG=${RUST_LOG:-warn} "$target_dir/debug/examples/serve_metrics" \
  --listen 127.0.0.1:0 --seconds "$SERVE_SECONDS" >"$work/serve.out" 2>"$work/serve.err" &
pid=$!

url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^metrics: //p' "$work/serve.out")
  [[ -n "$url" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; echo "promtool-check: serve_metrics exited early" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "promtool-check: serve_metrics did not report its address" >&2; exit 1; }

# Lag and committed offsets appear only once librdkafka has reported them.
deadline=$((SECONDS + WAIT_SECONDS))
while :; do
  curl -fsS "$url" >"$work/scrape.txt"
  missing=()
  for m in "${METRICS[@]}"; do
    grep -q "^# TYPE $m " "$work/scrape.txt" || missing+=("$m")
  done
  grep -q '^vitalwatch_messages_consumed_total{.*} [1-9]' "$work/scrape.txt" || missing+=("(consumed > 0)")
  ((${#missing[@]} == 0)) && break
  if ((SECONDS >= deadline)); then
    echo "promtool-check: still missing after ${WAIT_SECONDS}s: ${missing[*]}" >&2
    exit 1
  fi
  sleep 1
done

echo "promtool-check: scraped $(grep -c '^vitalwatch_' "$work/scrape.txt") samples of ${#METRICS[@]} metrics from $url"
if problems=$(promtool check metrics <"$work/scrape.txt" 2>&1); then
  echo "promtool check metrics: no problems ($(promtool --version 2>&1 | head -n1))"
else
  echo "promtool check metrics reported problems:" >&2
  echo "$problems" >&2
  exit 1
fi
