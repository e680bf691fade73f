#!/usr/bin/env bash
# A short fuzz run of every target of fuzz/ (see fuzz/README.md): builds
# the fuzz crate with cargo-fuzz on the nightly toolchain and runs each
# target for 60 seconds from a corpus seeded from tests/fixtures. Fails when
# any target crashes (the input is left in fuzz/artifacts/<target>/).
# Installs cargo-fuzz when missing, and the nightly toolchain only when
# rustup has none.
# Usage: scripts/fuzz-smoke.sh [seconds per target, default 60]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz-smoke.sh [seconds per target, default 60]" >&2
  exit 2
fi

# target and the longest input it is given
targets=(event_parse:16384 replay_parse:65536 exceptions_parse:8192)

if ! command -v rustup >/dev/null 2>&1; then
  echo "error: cargo-fuzz needs the nightly toolchain, and rustup to install it" >&2
  exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> installing the nightly toolchain (cargo-fuzz needs it)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz" >&2
  nice cargo install --locked cargo-fuzz
fi
scripts/build-deps.sh

# Unoptimised (--dev): a minute of fuzzing needs no speed, and the AWS SDK
# crates build several times faster without optimisation. Debug assertions
# and AddressSanitizer are on as in the long runs.
echo "==> building the fuzz targets (unoptimised)"
nice cargo +nightly fuzz build --dev
fuzz_target="${CARGO_TARGET_DIR:-$root/fuzz/target}"
echo "    disk: $(du -sh "$fuzz_target" 2>/dev/null | cut -f1) in $fuzz_target; $(df -h --output=avail "$root" 2>/dev/null | tail -1 | tr -d ' ') free"

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
fuzz/seed.sh "$corpus"

passed=0
failed=0
for entry in "${targets[@]}"; do
  target=${entry%%:*}
  max_len=${entry#*:}
  echo "==> fuzzing $target for ${seconds}s"
  # libFuzzer writes a line for every input it adds: thousands a minute. The
  # whole output goes to a file; the final statistics are printed, and the
  # end of the file when the target fails.
  log="$corpus/$target.log"
  if nice cargo +nightly fuzz run --dev "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=30 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::)' "$log" | sed 's/^/    /'
    passed=$((passed + 1))
  else
    tail -n 60 "$log" >&2
    echo "fuzz-smoke: $target FAILED (the input is in fuzz/artifacts/$target/)" >&2
    failed=$((failed + 1))
  fi
done

echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
