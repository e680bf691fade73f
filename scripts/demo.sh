#!/usr/bin/env bash
# The whole pipeline on a local AWS emulator, from a fresh clone:
# installs the emulator (Python venv), builds keywatch, starts both, wires a
# default-bus rule → input queue (+ DLQ) and a findings bus → findings queue,
# gives a user a second access key, delivers the CloudTrail event AWS would,
# and prints the finding keywatch publishes — then the PASSED finding once
# the key is deactivated. Everything started is stopped on exit.
# Honours CARGO_TARGET_DIR.
# Usage: scripts/demo.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
echo "==> Python venv with the AWS emulator (moto server)" >&2
venv=$(scripts/python-env.sh)
echo "==> Building keywatch" >&2
scripts/build-deps.sh
cargo build --locked --quiet --bin keywatch
exec "$venv/bin/python" scripts/demo.py --keywatch "$target/debug/keywatch" --moto-server "$venv/bin/moto_server"
