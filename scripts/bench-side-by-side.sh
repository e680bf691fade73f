#!/usr/bin/env bash
# keywatch beside a plain boto3 worker and the emulator's floor, on one moto
# server (benches/side_by_side.py): AWS calls, CPU and peak RSS per event,
# drain time of a 1,000-event backlog. Builds the release binary and the
# Python venv first; starts and stops its own moto server. Takes ~10 minutes
# (moto is slow: set-up ~35 s and a 100–220 s drain per worker).
# Usage: scripts/bench-side-by-side.sh [side_by_side.py options, e.g. --receivers 2]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
echo "==> Python venv with the AWS emulator (moto server)" >&2
venv=$(scripts/python-env.sh)
scripts/build-deps.sh
echo "==> cargo build --release --bin keywatch" >&2
cargo build --locked --release --bin keywatch >&2
exec "$venv/bin/python" benches/side_by_side.py \
  --keywatch "$target/release/keywatch" --moto-server "$venv/bin/moto_server" "$@"
