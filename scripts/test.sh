#!/usr/bin/env bash
# Runs every test keywatch has, after installing what they need:
#   - the Python venv with the local AWS emulator (moto server) and the OCSF
#     schemas with a JSON Schema validator (tests/ocsf_check.py, which the Rust
#     tests run on every OCSF finding they produce),
#   - the infrastructure linters (cfn-lint, checkov, hadolint,
#     kubernetes-validate) in their own venv, and a deploy of the central stack
#     to the emulator,
#   - Debian's prometheus (promtool, and the server the monitoring test runs),
#     the alert rules' unit tests and the dashboard checks,
#   - the relative links and #anchors of the documentation (scripts/check-links.py),
#   - rustfmt (the fuzz crate too) and clippy (warnings are errors),
#   - the Rust unit, fixture and end-to-end tests, the Lambda function's
#     included (`--features lambda`; the end-to-end tests start
#     their own emulator, and a real Prometheus, on free 127.0.0.1 ports and
#     run the real binary),
#   - the fuzz smoke: every target of fuzz/ for 60 seconds on the nightly
#     toolchain (scripts/fuzz-smoke.sh installs cargo-fuzz when missing).
# Usage: scripts/test.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# One cold run: incremental artifacts would only take disk (gigabytes of it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# What the builds leave on disk, printed after each of them, so that a run
# that fills the disk says where the space went.
disk() {
    local target="${CARGO_TARGET_DIR:-$root/target}"
    echo "    disk: $(du -sh "$target" 2>/dev/null | cut -f1) in $target; $(df -h --output=avail "$target" 2>/dev/null | tail -1 | tr -d ' ') free"
}
# Each step's wall time, printed when the next one starts and in a table at
# the end, so that a slow run says where its time went.
started=$SECONDS
step_name=""
step_start=$SECONDS
times=()
step() {
    if [ -n "$step_name" ]; then
        times+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")")
        echo "    took $((SECONDS - step_start)) s"
    fi
    step_name=$1
    step_start=$SECONDS
    echo "==> $1"
}

step "Links in the documentation (scripts/check-links.py)"
python3 scripts/check-links.py

step "Python venv with the AWS emulator"
venv=$(scripts/python-env.sh)
export KEYWATCH_MOTO_SERVER="$venv/bin/moto_server"
# The end-to-end tests report themselves as ignored when a tool they need is
# missing (a plain `cargo test`); here a missing tool is a failure.
export KEYWATCH_REQUIRE_E2E=1

step "Dashboard and alert rules (promtool)"
scripts/check-monitoring.sh

step "Infrastructure: cfn-lint, checkov, hadolint, kubernetes-validate, stack on the emulator"
scripts/check-infra.sh

scripts/build-deps.sh
step "Formatting (cargo fmt --check) and the core alone (clippy --no-default-features)"
cargo fmt --check
(cd fuzz && cargo fmt --check)
# The library without its `aws` feature, as the fuzz crate links it.
cargo clippy --locked --no-default-features --lib -- -D warnings 2>&1

# One build for clippy and the tests: clippy-driver compiles keywatch's own
# crates (lib, binary, tests, benchmarks) with its lints as errors, as
# `cargo clippy --all-targets -- -D warnings` would, and the dependencies are
# built once, for the tests, instead of checked for clippy and built again.
# `cargo clippy` itself works this way (RUSTC_WORKSPACE_WRAPPER and
# CLIPPY_ARGS); the variables stay set so that `cargo test` finds the same
# build and compiles nothing.
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver) || {
    echo "error: clippy-driver not found: rustup component add clippy" >&2
    exit 1
}
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# With the `lambda` feature: the Lambda function's `bootstrap` binary and its
# end-to-end tests (tests/e2e/lambda.rs) come with the same build, for a few
# more crates (lambda_runtime, aws_lambda_events and 18 small ones: about 8 s
# of compiling, beside the SDK crates) and one more binary (about 4 s); its
# five tests take about 5 s.
step "Build and lint every target (clippy -D warnings; the benchmarks are run by hand: benches/README.md)"
cargo test --locked --features lambda --all-targets --no-run 2>&1
disk

step "cargo test"
cargo test --locked --features lambda --lib --bins --tests 2>&1
disk
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

step "Fuzz smoke (60 s per target; the long runs are in fuzz/README.md)"
scripts/fuzz-smoke.sh 60

step "done"
printf '%s\n' "${times[@]}"
echo "    total: $((SECONDS - started)) s"
echo "==> all checks passed"
