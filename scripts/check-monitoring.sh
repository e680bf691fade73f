#!/usr/bin/env bash
# Checks keywatch's monitoring files: the alert rules and their unit tests
# (dashboards/alerts.yaml, dashboards/alerts_test.yaml), the Grafana dashboard
# (dashboards/keywatch.json) and the PromQL inside both.
#
#   scripts/check-monitoring.sh          offline checks (promtool + Python stdlib)
#   scripts/check-monitoring.sh --live   also starts a throwaway Prometheus on 127.0.0.1
#                                        that scrapes dashboards/testdata/keywatch-sample.prom
#                                        and evaluates every query with tests/promql_check.py
#
# promtool comes from Debian's `prometheus` package, installed here when missing. The package
# ships an init script; the install is run so that it starts no service, and any prometheus
# process that appears during the install is stopped by its pid.
#
# Prints one line per check and closes with "check-monitoring: N passed, N failed";
# exits 1 when any check failed, 2 on bad usage.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

live=0
for arg in "$@"; do
  case "$arg" in
    --live) live=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-monitoring: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
pids=()
policy_created=0
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
failed_names=()

# check NAME COMMAND...: run COMMAND, show its output only when it fails.
check() {
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
    sed -n '/SUCCESS\|checked: \|wrote /s/^ */        /p' "$work/out" | head -n 3
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    printf 'FAIL  %s\n' "$name"
    sed 's/^/        /' "$work/out" | head -n 80
  fi
}

# ------------------------------------------------------------------------------ promtool

install_prometheus() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "promtool is missing and installing the prometheus package needs root" >&2
    return 1
  fi
  # Without systemd, the package's postinst would start /etc/init.d/prometheus through
  # invoke-rc.d; a policy-rc.d that answers 101 forbids that.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  local before rc pid
  before=$(pgrep -x prometheus || true)
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  rc=$?
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; policy_created=0; fi
  for pid in $(pgrep -x prometheus || true); do
    if ! grep -qx "$pid" <<<"$before"; then
      echo "stopping prometheus (pid $pid) started by the package install"
      kill "$pid"
    fi
  done
  return $rc
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found: installing Debian's prometheus package"
  if ! install_prometheus >"$work/install.log" 2>&1; then
    tail -n 20 "$work/install.log" >&2
    echo "check-monitoring: 0 passed, 1 failed"
    exit 1
  fi
fi
echo "using $(promtool --version 2>&1 | head -n 1)"

# ------------------------------------------------------------------------------ checks

check "promtool check rules dashboards/alerts.yaml" \
  promtool check rules dashboards/alerts.yaml

check "promtool test rules dashboards/alerts_test.yaml" \
  promtool test rules dashboards/alerts_test.yaml

# Structure of the dashboard, and every keywatch metric / label value that the dashboard,
# the rules, the rule tests and the sample metrics mention must be in the metric contract.
lint_dashboard() {
  python3 -B - "$root" <<'PY'
import json, re, sys
root = sys.argv[1]
sys.path.insert(0, f"{root}/tests")
import promql_check  # noqa: E402

HIST = ["keywatch_detection_latency_seconds", "keywatch_delivery_delay_seconds",
        "keywatch_processing_seconds", "keywatch_aws_request_duration_seconds"]
OTHER = ["keywatch_aws_requests_total", "keywatch_events_total", "keywatch_findings_total",
         "keywatch_emit_failed_entries_total", "keywatch_messages_total",
         "keywatch_coalesced_checks_total", "keywatch_enrichment_skipped_total",
         "keywatch_inflight_messages", "keywatch_queue_messages", "keywatch_build_info"]
NAMES = set(OTHER) | set(HIST) | {h + s for h in HIST for s in ("_bucket", "_sum", "_count")}
LABELS = {
    "status": {"FAILED", "PASSED"},
    "service": {"sqs", "iam", "eventbridge", "sts"},
    "operation": {"ReceiveMessage", "DeleteMessageBatch", "GetQueueAttributes", "ListAccessKeys",
                  "GetAccessKeyLastUsed", "GetAccountSummary", "PutEvents", "AssumeRole"},
    "outcome": {"ok", "throttled", "error", "finding", "compliant", "ignored", "failed_call", "invalid"},
    "event_name": {"CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey", "other", "unknown"},
    "result": {"deleted", "retried", "invalid"},
    "queue": {"input", "dlq"},
    "state": {"visible", "in_flight"},
    "how": {"in_flight", "recent"},
}
errors = []

path = f"{root}/dashboards/keywatch.json"
try:
    text = open(path, encoding="utf-8").read()
    dash = json.loads(text)
except (OSError, ValueError) as e:
    print(f"{path}: not valid JSON: {e}")
    sys.exit(1)

if not dash.get("uid"):
    errors.append("dashboard has no uid")
elif dash["uid"] != "keywatch":
    errors.append(f"dashboard uid is {dash['uid']!r}, expected 'keywatch'")
if "__inputs" in dash or "__requires" in dash:
    errors.append("dashboard has __inputs/__requires (an export for manual import, not provisioning)")
if "${DS_" in text:
    errors.append("dashboard references an import-time ${DS_...} input")
if not isinstance(dash.get("schemaVersion"), int):
    errors.append("dashboard has no schemaVersion")
variables = (dash.get("templating") or {}).get("list") or []
ds_vars = [v for v in variables if v.get("name") == "datasource"]
if not ds_vars or ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
    errors.append("templating needs a variable named datasource of type datasource, query prometheus")

def uses_var(ds):
    return isinstance(ds, dict) and ds.get("uid") in ("${datasource}", "$datasource")

ids, titles, n_targets = set(), set(), 0
for p in promql_check.walk_panels(dash.get("panels")):
    where = f"panel {p.get('id')} {p.get('title')!r}"
    if p.get("id") in ids:
        errors.append(f"{where}: duplicate panel id")
    ids.add(p.get("id"))
    if not isinstance(p.get("gridPos"), dict):
        errors.append(f"{where}: no gridPos")
    if p.get("type") == "row":
        continue
    if p.get("title") in titles:
        errors.append(f"{where}: duplicate title (promql_check.py selects panels by title)")
    titles.add(p.get("title"))
    if not uses_var(p.get("datasource")):
        errors.append(f"{where}: datasource is {p.get('datasource')!r}, not the ${{datasource}} variable")
    targets = [t for t in p.get("targets") or [] if t.get("expr")]
    if not targets:
        errors.append(f"{where}: no PromQL target")
    for t in p.get("targets") or []:
        n_targets += 1
        if "datasource" in t and not uses_var(t["datasource"]):
            errors.append(f"{where} target {t.get('refId')}: datasource is {t['datasource']!r}")
        if "$__rate_interval" not in t.get("expr", "") and re.search(r"\brate\(|\bincrease\(", t.get("expr", "")) \
                and not re.search(r"\[\d+[smhdw]\]", t.get("expr", "")):
            errors.append(f"{where} target {t.get('refId')}: rate() without a window")

# Metric names and label values against the contract.
exprs = promql_check.dashboard_exprs(path) + promql_check.rules_exprs(f"{root}/dashboards/alerts.yaml")
sources = [(e.name(), e.raw) for e in exprs]
for rel in ("dashboards/alerts_test.yaml", "dashboards/testdata/keywatch-sample.prom"):
    with open(f"{root}/{rel}", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.lstrip().startswith("#") and "keywatch_" in line:
                sources.append((f"{rel}:{n}", line))
seen = set()
for where, text in sources:
    for name in re.findall(r"\bkeywatch_[a-z0-9_]+", text):
        seen.add(name)
        if name not in NAMES:
            errors.append(f"{where}: {name} is not in the metric contract")
    for label, op, value in re.findall(r'\b([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"', text):
        if label in LABELS:
            values = value.split("|") if "~" in op else [value]
            for v in values:
                if v not in LABELS[label]:
                    errors.append(f"{where}: {label}{op}\"{value}\": {v!r} is not a contract value")
with open(f"{root}/dashboards/testdata/keywatch-sample.prom", encoding="utf-8") as f:
    sample = f.read()
for name in sorted(NAMES - {h + "_sum" for h in HIST} - {h + "_count" for h in HIST} - set(HIST)):
    if not re.search(rf"^{name}[{{ ]", sample, re.M):
        errors.append(f"testdata/keywatch-sample.prom lacks {name}")

for e in errors:
    print(e)
if errors:
    sys.exit(1)
n_panels = len(titles)
print(f"checked: uid keywatch, {n_panels} panels, {n_targets} targets, all on ${{datasource}}; "
      f"{len(sources)} expressions/lines match the metric contract")
PY
}
check "dashboard structure and metric contract (keywatch.json, alerts, tests, sample)" lint_dashboard

# PromQL of the dashboard (with $__rate_interval=5m) and of the rules as the stdlib reader in
# tests/promql_check.py extracts them, written as recording rules for promtool to parse.
parse_exprs() {
  python3 tests/promql_check.py --dashboard dashboards/keywatch.json --rules dashboards/alerts.yaml \
    --rate-interval 5m --emit-rule-file "$work/exprs.rules.json" &&
    promtool check rules "$work/exprs.rules.json"
}
check "PromQL of every dashboard target and rule parses (promtool)" parse_exprs

check "sample metrics are valid exposition format (promtool check metrics)" \
  sh -c 'promtool check metrics < dashboards/testdata/keywatch-sample.prom'

# ------------------------------------------------------------------------------ live

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for URL_PATH_AND_QUERY SECONDS: poll Prometheus until the query returns a series.
wait_for() {
  python3 - "$1" "$2" <<'PY'
import json, sys, time, urllib.request
url, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            body = json.load(r)
        if body.get("data", {}).get("result"):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
print(f"timed out waiting for {url}")
sys.exit(1)
PY
}

live_check() {
  command -v prometheus >/dev/null || { echo "prometheus binary not found"; return 1; }
  local http_port prom_port base
  http_port=$(free_port) && prom_port=$(free_port) || return 1
  base="http://127.0.0.1:$prom_port"
  mkdir -p "$work/www" "$work/tsdb"
  cp dashboards/testdata/keywatch-sample.prom "$work/www/metrics"
  python3 -m http.server "$http_port" --bind 127.0.0.1 --directory "$work/www" \
    >"$work/http.log" 2>&1 &
  pids+=($!)
  cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/dashboards/alerts.yaml
scrape_configs:
  - job_name: keywatch
    static_configs:
      - targets: ["127.0.0.1:$http_port"]
EOF
  promtool check config "$work/prometheus.yml" || return 1
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
  pids+=($!)
  echo "prometheus pid ${pids[-1]} on 127.0.0.1:$prom_port, metrics served on 127.0.0.1:$http_port"
  if ! wait_for "$base/api/v1/query?query=up%7Bjob%3D%22keywatch%22%7D%3D%3D1" 30; then
    tail -n 20 "$work/prometheus.log"
    return 1
  fi
  # Let a few scrapes land, then double every counter and histogram sample so that rates are
  # non-zero and quantiles are numbers rather than NaN; then let a few more scrapes land.
  sleep 3
  python3 - "$work/www/metrics" <<'PY'
import os, re, sys
path = sys.argv[1]
out = []
for line in open(path, encoding="utf-8"):
    m = re.match(r"^(keywatch_\w+(?:_total|_bucket|_sum|_count))(\{[^}]*\})? (\S+)$", line.rstrip("\n"))
    if m:
        line = f"{m.group(1)}{m.group(2) or ''} {float(m.group(3)) * 2:g}\n"
    out.append(line)
with open(path + ".new", "w", encoding="utf-8") as f:
    f.writelines(out)
os.replace(path + ".new", path)
PY
  sleep 4
  python3 tests/promql_check.py --prometheus "$base" \
    --dashboard dashboards/keywatch.json --rules dashboards/alerts.yaml \
    --require-data-all-panels-except --nan-is-empty || return 1
  # The rules file must also load in a real Prometheus, with every rule healthy.
  python3 - "$base" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v1/rules", timeout=5) as r:
    groups = json.load(r)["data"]["groups"]
rules = [rule for g in groups for rule in g["rules"]]
bad = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}" for r in rules if r.get("health") not in ("ok", "unknown")]
print(f"rules loaded by prometheus: {len(rules)} in {[g['name'] for g in groups]}; unhealthy: {bad or 'none'}")
sys.exit(1 if bad or not rules else 0)
PY
}

if [ "$live" = 1 ]; then
  check "live: every query on a real Prometheus scraping sample metrics (tests/promql_check.py)" live_check
  # Show the per-expression lines even on success: they are the point of the live run.
  sed -n '/^\(OK\|ERROR\|NODATA\|summary\|rules loaded\)/s/^/        /p' "$work/out" | head -n 60
fi

# ------------------------------------------------------------------------------ summary

if [ "$failed" -gt 0 ]; then
  printf 'failed checks:\n'
  printf '  - %s\n' "${failed_names[@]}"
fi
echo "check-monitoring: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
