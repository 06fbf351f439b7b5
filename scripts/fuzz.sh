#!/usr/bin/env bash
# Fuzzes the decoder (fuzz/fuzz_targets/decode.rs) for a bounded time and prints how many
# inputs it ran. Usage: scripts/fuzz.sh [SECONDS]   (default 600)
#
# The fuzz crate compiles src/vitals.rs by itself, with serde, serde_json and thiserror,
# not the whole vitalwatch crate (no librdkafka, no OpenSSL): a fresh build takes 1-2
# minutes on 2 cores, most of it libFuzzer's C++. Before building, this checks that those
# dependencies resolve to the versions and features the service is built with.
#
# Installs cargo-fuzz and a C++ compiler when missing. cargo-fuzz passes -Z flags
# (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them, for
# this build only. New inputs go to target/fuzz/corpus/decode, so the seed corpus in
# fuzz/corpus/decode stays as committed. Exits non-zero on a crash, and names its input.
#
# FUZZ_OPTIONAL=1 (CI): when this machine cannot fuzz at all (no C++ compiler and none
# can be installed, a toolchain without the sanitizer runtime, cargo-fuzz not
# installable), print "fuzzing skipped: <reason>" and exit 0 instead of failing.
# A fuzz target that does not compile, or a crash, fails either way.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${1:-600}"
case "$seconds" in
  '' | *[!0-9]* | 0) echo "usage: scripts/fuzz.sh [SECONDS]  (a positive whole number)" >&2; exit 2 ;;
esac

# Newest cargo-fuzz checked to build on this project's stable toolchain (rust 1.95).
CARGO_FUZZ_VERSION=0.13.2
# Longer inputs than this only repeat structure; pipeline.max_message_bytes (64 KiB) is
# covered by the unit tests.
MAX_LEN=4096

work="$root/target/fuzz"
mkdir -p "$work/corpus/decode"
log="$work/decode.log"

cannot() {
  if [ "${FUZZ_OPTIONAL:-0}" = 1 ]; then
    echo "fuzzing skipped: $1"
    exit 0
  fi
  echo "error: $1" >&2
  exit 1
}

# The decoder under fuzz must be the one the service runs: fuzz/Cargo.toml's serde,
# serde_json and thiserror with the service's features (float_roundtrip changes how
# numbers parse), and every crate they pull in at the service's version (Cargo.lock).
# A mismatch is the project's, so it fails even with FUZZ_OPTIONAL=1.
deps() {
  cargo tree --locked -e normal --prefix none -f '{p} [{f}]' "$@" | sed 's/ ([^)]*)//g' | sort -u
}
service_deps=$(deps) || { echo "error: cargo tree failed for Cargo.toml" >&2; exit 1; }
fuzz_deps=$(deps --manifest-path fuzz/Cargo.toml) ||
  { echo "error: cargo tree failed for fuzz/Cargo.toml" >&2; exit 1; }
# Versions of everything but the fuzzing harness; features of the direct dependencies
# (a transitive crate may have more features on in the service, enabled by its other
# dependencies, e.g. memchr's "default" = "std").
drift=$(
  comm -23 <(grep -vE '^(vitalwatch-fuzz|libfuzzer-sys|arbitrary) ' <<<"$fuzz_deps" | cut -d' ' -f1,2) \
    <(cut -d' ' -f1,2 <<<"$service_deps" | sort -u)
  comm -23 <(grep -E '^(serde|serde_json|thiserror) ' <<<"$fuzz_deps") <(sort -u <<<"$service_deps")
)
if [ -n "$drift" ]; then
  echo "error: fuzz/Cargo.toml or fuzz/Cargo.lock differs from the service's dependencies:" >&2
  while IFS= read -r line; do echo "  $line"; done <<<"$drift" >&2
  echo "align fuzz/Cargo.toml with Cargo.toml (features), or run in fuzz/:" \
    "cargo update -p <crate> --precise <the version in Cargo.lock>" >&2
  exit 1
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
case "$host" in
  x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
  *) cannot "no AddressSanitizer runtime in the $host toolchain (cargo fuzz needs one)" ;;
esac

# libfuzzer-sys compiles libFuzzer's C++ sources.
if ! command -v c++ >/dev/null 2>&1; then
  scripts/ensure-build-deps.sh fuzz ||
    cannot "no C++ compiler (c++) for libFuzzer, and installing g++ with apt-get failed"
  command -v c++ >/dev/null 2>&1 ||
    cannot "no C++ compiler (c++) for libFuzzer after installing g++"
fi

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" ||
    cannot "cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION failed"
fi

export RUSTC_BOOTSTRAP=1
# Can this toolchain build and link an instrumented binary at all? A failure here is the
# machine's; a failure of the real build below is the fuzz target's, and always fails.
sanitizer="${FUZZ_SANITIZER:-address}"
# (Coverage hooks alone do not link: libFuzzer, or the sanitizer runtime, defines them.)
probe_flags=(-Copt-level=0)
[ "$sanitizer" = none ] ||
  probe_flags+=("-Zsanitizer=$sanitizer" -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4)
printf 'fn main() {}\n' > "$work/probe.rs"
rustc --edition 2024 "${probe_flags[@]}" -o "$work/probe" "$work/probe.rs" \
  > "$work/probe.log" 2>&1 ||
  cannot "rustc cannot build with ${probe_flags[*]} here: $(head -n 3 "$work/probe.log" | tr '\n' ' ')"

# Optimised, with debug assertions and overflow checks. FUZZ_SANITIZER=none drops
# AddressSanitizer: the decoder is safe Rust (ASan watches the unsafe code of serde_json
# and memchr under it), and it runs 3-5 times faster without.
build_flags=(--release --debug-assertions --sanitizer "$sanitizer")
start=$(date +%s)
echo "== cargo fuzz build decode"
cargo fuzz build "${build_flags[@]}" decode
echo "fuzz build: $(($(date +%s) - start)) s"

echo "== cargo fuzz run decode for $seconds s (log: ${log#"$root"/})"
set +e
cargo fuzz run "${build_flags[@]}" decode "$work/corpus/decode" "$root/fuzz/corpus/decode" -- \
  -max_total_time="$seconds" -max_len="$MAX_LEN" -dict="$root/fuzz/decode.dict" \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -print_pcs=0 > "$log" 2>&1
status=$?
set -e

# libFuzzer's progress lines ("#N ... corp: A/Bb ... exec/s: E") and final stats.
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
corpus=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -n 1 | sed 's/corp: //' || true)
if [ "$status" -ne 0 ]; then
  # The panic, the input's bytes and where libFuzzer saved it.
  grep -v '^#' "$log" | tail -n 60 || true
  artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
  echo "FUZZ FAILURE after ${execs:-?} executions: exit $status; input: ${artifact:-see $log}"
  echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} decode ${artifact:-<input>}"
  exit 1
fi
grep -E '^#[0-9]+' "$log" | tail -n 2 || true
echo "fuzz summary: $seconds s, ${execs:-?} executions (${rate:-?} exec/s), corpus ${corpus:-?} (inputs/bytes), no crash"
