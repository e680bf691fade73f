#!/usr/bin/env bash
# Detection latency at a steady low rate through the whole pipeline on moto
# (benches/latency.py): 2 events/s for 60 s, p50/p99 of the findings'
# detection_latency_seconds beside the floor of the two AWS round trips.
# Builds the release binary and the Python venv first; starts and stops its
# own moto server. Takes ~2 minutes.
# Usage: scripts/bench-latency.sh [latency.py options, e.g. --rate 5 --seconds 30]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
echo "==> Python venv with the AWS emulator (moto server)" >&2
venv=$(scripts/python-env.sh)
scripts/build-deps.sh
echo "==> cargo build --release --bin keywatch" >&2
cargo build --locked --release --bin keywatch >&2
exec "$venv/bin/python" benches/latency.py \
  --keywatch "$target/release/keywatch" --moto-server "$venv/bin/moto_server" "$@"
