#!/usr/bin/env bash
# Runs one of the moto benchmarks (benches/<name>.py) against the release
# binary: makes the Python venv with the emulator and the native build tools,
# builds `keywatch` in release, then hands over the remaining arguments.
# Honours CARGO_TARGET_DIR. Called by scripts/bench-latency.sh and
# scripts/bench-side-by-side.sh.
# Usage: scripts/bench-moto.sh benches/<name>.py [that script's options]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bench=${1:?usage: scripts/bench-moto.sh benches/<name>.py [options]}
shift
target=${CARGO_TARGET_DIR:-$root/target}
echo "==> Python venv with the AWS emulator (moto server)" >&2
venv=$(scripts/python-env.sh)
scripts/build-deps.sh
echo "==> cargo build --release --bin keywatch" >&2
cargo build --locked --release --bin keywatch >&2
exec "$venv/bin/python" "$bench" \
  --keywatch "$target/release/keywatch" --moto-server "$venv/bin/moto_server" "$@"
