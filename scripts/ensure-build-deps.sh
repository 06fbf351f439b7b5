#!/usr/bin/env bash
# Installs what the vendored librdkafka and OpenSSL builds need, when missing:
# a C toolchain, make, and a Perl with the modules OpenSSL's Configure uses.
set -euo pipefail
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
perl -MFindBin -MIPC::Cmd -MFile::Compare -e1 >/dev/null 2>&1 || missing+=(perl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  echo "build prerequisites present (cc, make, perl)"
fi
