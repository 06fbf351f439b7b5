#!/usr/bin/env bash
# The tools wing uses the library from outside: src/tools compiles as a crate of its own
# that depends on vitalwatch, with every `crate::` path of the service made
# `vitalwatch::`. A tool reaching for a `pub(crate)` item fails here, naming it (CI runs
# this). The crate is generated under target/check-tools/ and shares the target
# directory, so only the tools are compiled again.
#
#   scripts/check-tools.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/target/check-tools"
rm -rf "$dir/src"
mkdir -p "$dir/src"

# The library's own dependencies, as the tools' (same versions through the copied lock
# file); optional ones are plain here.
{
  cat <<EOF
[package]
name = "vitalwatch-tools-check"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
vitalwatch = { path = "$root" }
EOF
  awk '/^\[dependencies\]/ { on = 1; next } /^\[/ { on = 0 } on && NF' "$root/Cargo.toml" |
    sed 's/, optional = true//'
} >"$dir/Cargo.toml"
cp "$root/Cargo.lock" "$dir/Cargo.lock"

cp -r "$root/src/tools" "$dir/src/tools"
# crate::tools:: stays (the wing's own modules); every other crate:: path is the library.
find "$dir/src/tools" -name '*.rs' -print0 |
  xargs -0 sed -i -E 's/\bcrate::tools::/@TOOLS@/g; s/\bcrate::/vitalwatch::/g; s/@TOOLS@/crate::tools::/g'
cat >"$dir/src/lib.rs" <<'EOF'
// What the tools use of themselves is checked in the real build; here only the library's
// visibility is.
#![allow(dead_code, unused_imports)]
mod tools;
EOF

cd "$dir"
if ! CARGO_TARGET_DIR="$root/target" cargo check --quiet --lib 2>"$dir/check.log"; then
  grep -E '^error' -A6 "$dir/check.log" | head -60 >&2
  echo "check-tools: src/tools uses what the library does not export (full log: $dir/check.log)" >&2
  exit 1
fi
echo "check-tools: src/tools compiles against the library's public items"
