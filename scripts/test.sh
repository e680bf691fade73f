#!/usr/bin/env bash
# Runs every test keywatch has, after installing what they need:
#   - the Python venv with the local AWS emulator (moto server),
#   - the Rust unit, fixture and end-to-end tests (the end-to-end tests start
#     their own emulator on a free 127.0.0.1 port and run the real binary).
# Usage: scripts/test.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "==> Python venv with the AWS emulator"
venv=$(scripts/python-env.sh)
export KEYWATCH_MOTO_SERVER="$venv/bin/moto_server"

echo "==> cargo test"
cargo test --locked --all-targets 2>&1

echo "==> all checks passed"
