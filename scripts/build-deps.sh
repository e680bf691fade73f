#!/usr/bin/env bash
# Makes sure the native build tools the Rust build needs are present: a C
# compiler (aws-lc-sys, the TLS library of the AWS SDK) and make (jemalloc,
# the binary's allocator). Installs them from Debian when missing (as root).
# Usage: scripts/build-deps.sh
set -euo pipefail
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the Rust build needs ${missing[*]}; install them (e.g. apt-get install ${missing[*]}) and re-run" >&2
  exit 1
fi
echo "==> installing build tools: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
