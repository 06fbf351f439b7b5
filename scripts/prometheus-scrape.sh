#!/usr/bin/env bash
# A real Prometheus server scrapes a running vitalwatch, then its HTTP API is asked for
# vitalwatch_messages_consumed_total, which must be above zero.
#
# vitalwatch runs as examples/serve_metrics.rs: the pipeline on an in-process mock cluster
# with traffic, serving /metrics. Installs Debian's `prometheus` package when missing.
# Bounded: the example and Prometheus run for at most SERVE_SECONDS, the query is retried
# for at most QUERY_SECONDS; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVE_SECONDS=${SERVE_SECONDS:-60}
QUERY_SECONDS=${QUERY_SECONDS:-40}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "prometheus-scrape: installing Debian package $2 (for $1)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need prometheus prometheus
need curl curl
need jq jq

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A port nothing answers on (Prometheus cannot be given port 0 and then asked for it).
free_port() {
  local p
  for p in $(seq "$1" $(($1 + 200))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

cargo build --quiet --example serve_metrics
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
RUST_LOG=${RUST_LOG:-warn} "$target_dir/debug/examples/serve_metrics" \
  --listen 127.0.0.1:0 --seconds "$SERVE_SECONDS" >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)

target=""
for _ in $(seq 1 100); do
  target=$(sed -n 's|^metrics: http://\([^/]*\)/metrics$|\1|p' "$work/serve.out")
  [[ -n "$target" ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/serve.err" >&2; echo "prometheus-scrape: serve_metrics exited early" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$target" ]] || { echo "prometheus-scrape: serve_metrics did not report its address" >&2; exit 1; }

cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: vitalwatch
    static_configs:
      - targets: ['$target']
YAML
port=$(free_port 19090)
timeout "$SERVE_SECONDS" prometheus \
  --config.file="$work/prometheus.yml" \
  --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" \
  --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
echo "prometheus-scrape: Prometheus on 127.0.0.1:$port scraping vitalwatch on $target"

deadline=$((SECONDS + QUERY_SECONDS))
while :; do
  if answer=$(curl -fsS --get --data-urlencode 'query=vitalwatch_messages_consumed_total' \
      "http://127.0.0.1:$port/api/v1/query" 2>/dev/null); then
    value=$(jq -r '[.data.result[].value[1] | tonumber] | add // 0' <<<"$answer")
    if jq -e '[.data.result[].value[1] | tonumber] | add // 0 | . > 0' <<<"$answer" >/dev/null; then
      echo "prometheus-scrape: vitalwatch_messages_consumed_total = $value"
      jq -c '.data.result[] | {metric, value}' <<<"$answer"
      health=$(curl -fsS "http://127.0.0.1:$port/api/v1/targets" | jq -r '.data.activeTargets[0].health')
      echo "prometheus-scrape: target health: $health"
      exit 0
    fi
  fi
  if ((SECONDS >= deadline)); then
    echo "prometheus-scrape: no non-zero vitalwatch_messages_consumed_total after ${QUERY_SECONDS}s; last answer: ${answer:-none}" >&2
    tail -n 20 "$work/prometheus.log" >&2 || true
    exit 1
  fi
  sleep 1
done
