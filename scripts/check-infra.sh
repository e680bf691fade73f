#!/usr/bin/env bash
# Lints and verifies everything under infra/ plus the Dockerfile:
#   1. cfn-lint        infra/central.yaml infra/member.yaml infra/routing-examples.yaml infra/lambda.yaml
#   2. checkov         infra/ (CloudFormation, Kubernetes, secrets) and the Dockerfile:
#                      any failed check or parsing error fails; skips are listed
#                      with their written reasons
#   3. hadolint        Dockerfile
#   4. kubernetes-validate --strict  infra/k8s (core kinds; CRDs only warn there)
#   5. infra/check_k8s.py            CRD schemas + cross-checks of infra/k8s
#   6. emulator        deploys infra/central.yaml on a private moto server and
#                      runs infra/local_deploy.py --verify against it (which also
#                      deploys infra/member.yaml and infra/lambda.yaml next to it)
# The lint tools live in their own venv (.venv-lint, pinned in
# scripts/requirements-lint.txt); the emulator comes from .venv
# (scripts/python-env.sh). scripts/venv.sh makes both on first use, so this
# runs on a fresh machine with only python3.11 and pip. Every step runs even
# after a failure; the last line is the summary and the exit status is
# non-zero when any step failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

K8S_VERSION=1.30.0
work=$(mktemp -d "${TMPDIR:-/tmp}/check-infra.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo "==> $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "--- ok: $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- FAILED: $name"
  fi
}

CFN_TEMPLATES=(infra/central.yaml infra/member.yaml infra/routing-examples.yaml infra/lambda.yaml)

run_cfn_lint() {
  "$venv/bin/cfn-lint" "${CFN_TEMPLATES[@]}" && echo "cfn-lint: ${#CFN_TEMPLATES[@]} templates, no findings"
}

# checkov: one JSON report per target, summarised compactly.
run_checkov() {
  local rc=0
  "$venv/bin/checkov" -d infra --skip-download --framework cloudformation kubernetes secrets \
    -o json >"$work/checkov-infra.json" 2>"$work/checkov-infra.err" || rc=1
  "$venv/bin/checkov" -f Dockerfile --skip-download --framework dockerfile \
    -o json >"$work/checkov-docker.json" 2>"$work/checkov-docker.err" || rc=1
  CFN_TEMPLATES="${CFN_TEMPLATES[*]}" \
    "$venv/bin/python" - "$work/checkov-infra.json" "$work/checkov-docker.json" <<'PY' || rc=1
import json, os, sys
want = {"cloudformation", "kubernetes", "dockerfile"}
seen, bad = set(), 0
# Every template cfn-lint checks must have been scanned by checkov as well.
want_cfn = {"/" + os.path.relpath(t, "infra") for t in os.environ["CFN_TEMPLATES"].split()}
seen_cfn = set()
for path in sys.argv[1:]:
    try:
        data = json.load(open(path))
    except ValueError as e:
        print(f"checkov: unreadable report {path}: {e}")
        sys.exit(1)
    for rep in data if isinstance(data, list) else [data]:
        if "check_type" not in rep:
            continue
        kind, s, res = rep["check_type"], rep["summary"], rep["results"]
        seen.add(kind)
        if kind == "cloudformation":
            seen_cfn |= {f["file_path"] for f in res.get("passed_checks", []) + res.get("failed_checks", [])}
        print(f"checkov {kind}: {s['passed']} passed, {s['failed']} failed, "
              f"{s['skipped']} skipped, {s['parsing_errors']} parsing errors")
        for f in res.get("failed_checks", []):
            print(f"  FAILED {f['check_id']} {f['resource']} {f['file_path']}:{f['file_line_range']} {f['check_name']}")
        for f in res.get("skipped_checks", []):
            reason = (f.get("check_result") or {}).get("suppress_comment") or "(no reason given)"
            print(f"  skipped {f['check_id']} {f['resource']}: {reason}")
            if reason == "(no reason given)":
                bad += 1
        for p in res.get("parsing_errors", []):
            print(f"  PARSING ERROR {p}")
        bad += s["failed"] + s["parsing_errors"]
missing = want - seen
if missing:
    print(f"checkov: no results for {sorted(missing)} (nothing scanned?)")
    bad += 1
if want_cfn - seen_cfn:
    print(f"checkov: no CloudFormation results for {sorted(want_cfn - seen_cfn)}")
    bad += 1
sys.exit(1 if bad else 0)
PY
  if [ "$rc" -ne 0 ]; then
    for f in "$work/checkov-infra.err" "$work/checkov-docker.err"; do
      if [ -s "$f" ]; then tail -n 20 "$f"; fi
    done
  fi
  return "$rc"
}

run_hadolint() {
  "$venv/bin/hadolint" --no-color Dockerfile && echo "hadolint: Dockerfile, no findings"
}

run_kubernetes_validate() {
  # --strict rejects unknown fields in core kinds. Kinds it has no schema for
  # (the KEDA and Prometheus Operator CRDs) only WARN here; check_k8s.py fails
  # on any such kind that is not one of those CRDs and validates the CRDs itself.
  "$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" infra/k8s/*.yaml
}

run_check_k8s() {
  "$venv/bin/python" infra/check_k8s.py infra/k8s
}

# The emulator (scripts/kwtools/emulator.py) on a free 127.0.0.1 port, stopped
# by its pid when the deploy is done.
run_emulator_verify() {
  local appvenv rc=0
  appvenv=$(bash scripts/python-env.sh) || return 1
  "$appvenv/bin/python" scripts/kwtools/emulator.py "$appvenv/bin/moto_server" -- \
    timeout 300 "$appvenv/bin/python" infra/local_deploy.py --endpoint-url '{endpoint}' --verify \
    >"$work/outputs.json" || rc=1
  [ "$rc" -eq 0 ] && echo "stack outputs: $(tr -d '\n ' <"$work/outputs.json")"
  return "$rc"
}

# Idempotent: pip runs only when the pins or the interpreter changed (a first
# install, checkov's, takes a minute or two).
if ! venv=$(scripts/venv.sh .venv-lint scripts/requirements-lint.txt); then
  echo "check-infra: could not install the lint venv at .venv-lint"
  echo "check-infra: 0 passed, 1 failed"
  exit 1
fi

step "cfn-lint" run_cfn_lint
step "checkov" run_checkov
step "hadolint" run_hadolint
step "kubernetes-validate --strict" run_kubernetes_validate
step "check_k8s (CRDs and cross-checks)" run_check_k8s
step "emulator deploy + verify" run_emulator_verify

if [ "$failed" -ne 0 ]; then
  echo "check-infra: failed steps: ${failures[*]}"
fi
echo "check-infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
