#!/usr/bin/env bash
# Installs what the vendored librdkafka and OpenSSL builds need, when missing:
# a C toolchain, make, and a Perl with the modules OpenSSL's Configure uses.
# `ensure-build-deps.sh fuzz` also wants a C++ compiler: libfuzzer-sys builds libFuzzer
# from its C++ sources (scripts/fuzz.sh). `ensure-build-deps.sh e2e` also wants the
# openssl CLI: the end-to-end security scenario makes its CA and certificates with it
# (scripts/e2e.sh).
set -euo pipefail
missing=()
wanted="cc, make, perl"
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
perl -MFindBin -MIPC::Cmd -MFile::Compare -e1 >/dev/null 2>&1 || missing+=(perl)
if [ "${1:-}" = fuzz ]; then
  wanted+=", c++"
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
fi
if [ "${1:-}" = e2e ]; then
  wanted+=", openssl"
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  echo "build prerequisites present ($wanted)"
fi
