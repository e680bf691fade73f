#!/usr/bin/env bash
# Detection latency at a steady low rate through the whole pipeline on moto
# (benches/latency.py): 2 events/s for 60 s, each a key created for real, for
# the emulator's floor, a plain boto3 loop and keywatch in turn; latency
# p50/p99, AWS requests per event by operation, CPU per event and peak RSS of
# each. Builds the release binary and the Python venv first; starts and stops
# its own moto server. Takes ~6 minutes.
# Usage: scripts/bench-latency.sh [latency.py options, e.g. --rate 4 --seconds 30
#        --other-keywatch before=path/to/keywatch --workers floor,baseline,keywatch-before,keywatch]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/bench-moto.sh" benches/latency.py "$@"
