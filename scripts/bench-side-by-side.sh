#!/usr/bin/env bash
# keywatch beside a plain boto3 worker and the emulator's floor, on one moto
# server (benches/side_by_side.py): AWS calls, CPU and peak RSS per event,
# drain time of a 1,000-event backlog. Builds the release binary and the
# Python venv first; starts and stops its own moto server. Takes ~10 minutes
# (moto is slow: set-up ~35 s and a 100–220 s drain per worker).
# Usage: scripts/bench-side-by-side.sh [side_by_side.py options, e.g. --receivers 2]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/bench-moto.sh" benches/side_by_side.py "$@"
