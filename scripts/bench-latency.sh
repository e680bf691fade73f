#!/usr/bin/env bash
# Detection latency at a steady low rate through the whole pipeline on moto
# (benches/latency.py): 2 events/s for 60 s, p50/p99 of the findings'
# detection_latency_seconds beside the floor of the two AWS round trips.
# Builds the release binary and the Python venv first; starts and stops its
# own moto server. Takes ~2 minutes.
# Usage: scripts/bench-latency.sh [latency.py options, e.g. --rate 5 --seconds 30]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/bench-moto.sh" benches/latency.py "$@"
