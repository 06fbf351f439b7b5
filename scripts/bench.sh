#!/usr/bin/env bash
# The end-to-end benchmark: vitalwatch against a raw consumer on the same broker and data.
#
#   scripts/bench.sh --quick            # ~1 min: the method and rough ratios
#   scripts/bench.sh                    # full run (~5 min): what docs/benchmarks.md shows
#   scripts/bench.sh --brokers H:P      # against a real broker instead of the mock cluster
#
# Any flag of `vitalwatch bench --help` passes through. Results: target/bench/results.json,
# results.md (the tables), throughput.svg and latency-cdf.svg. The ratio table is printed
# on stdout. Timings are never asserted: the run fails only if a measurement cannot be made.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec target/release/vitalwatch bench "$@"
