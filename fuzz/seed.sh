#!/usr/bin/env bash
# Seeds the corpora from tests/fixtures: copies (or derives) each fixture
# into <dir>/<target>/ for the three fuzz targets. Nothing is kept in git:
# the corpora are made again from the fixtures whenever they are needed.
#   event_parse       every fixture, as a message body
#   replay_parse      every fixture, plain (first byte 0) and gzip-compressed
#                     (first byte 1); the envelopes as JSON lines; their
#                     CloudTrail records as a CloudTrail log file (python3)
#   exceptions_parse  the exceptions fixtures read as YAML (first byte 0),
#                     TOML (1) and either (2)
# Usage: fuzz/seed.sh [dir]   (default: fuzz/corpus)
set -euo pipefail
fuzz=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fixtures="$fuzz/../tests/fixtures"
corpus="${1:-$fuzz/corpus}"
mkdir -p "$corpus/event_parse" "$corpus/replay_parse" "$corpus/exceptions_parse"

# The first byte of a replay_parse or exceptions_parse input is the choice.
with() { printf "\\$(printf '%03o' "$1")"; cat; }

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for f in "$fixtures"/*; do
  [ -f "$f" ] || continue
  name=$(basename "$f")
  cp "$f" "$corpus/event_parse/$name"
  with 0 <"$f" >"$corpus/replay_parse/plain-$name"
  gzip -9nc "$f" | with 1 >"$corpus/replay_parse/gzip-$name"
  case "$name" in
    *.json) { tr -d '\n' <"$f"; echo; } >>"$lines" ;;
    exceptions.yaml | exceptions.toml)
      for choice in 0 1 2; do
        with "$choice" <"$f" >"$corpus/exceptions_parse/$choice-$name"
      done
      ;;
  esac
done
with 0 <"$lines" >"$corpus/replay_parse/plain-envelopes.jsonl"
gzip -9nc "$lines" | with 1 >"$corpus/replay_parse/gzip-envelopes.jsonl"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$lines" <<'PY' | with 0 >"$corpus/replay_parse/plain-cloudtrail.json"
import json, sys
def envelopes():
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a fixture that is not JSON (an invalid_* one)
        if isinstance(e, dict) and isinstance(e.get("detail"), dict):
            yield e
print(json.dumps({"Records": [e["detail"] for e in envelopes()]}))
PY
fi
echo "fuzz/seed.sh: $(find "$corpus" -type f | wc -l) seeds in $corpus" >&2
