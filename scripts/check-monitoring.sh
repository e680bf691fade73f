#!/usr/bin/env bash
# Checks keywatch's monitoring files: the alert rules and their unit tests
# (dashboards/alerts.yaml, dashboards/alerts_test.yaml), the Grafana dashboard
# (dashboards/keywatch.json) and the PromQL inside both, the runbook links of the alerts
# (docs/runbook.md) and the Prometheus Operator copy of the rules
# (infra/k8s/prometheusrule.yaml).
#
#   scripts/check-monitoring.sh          offline checks (promtool + Python stdlib)
#   scripts/check-monitoring.sh --live   also starts a throwaway Prometheus on 127.0.0.1
#                                        that scrapes dashboards/testdata/keywatch-sample.prom
#                                        (and, as job keywatch-noscan, a copy without the scan
#                                        metrics: a worker that never scanned) and evaluates
#                                        every query with tests/promql_check.py
#   scripts/check-monitoring.sh --write-prometheusrule
#                                        rewrites the groups of infra/k8s/prometheusrule.yaml
#                                        from dashboards/alerts.yaml and exits
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
write_rule=0
for arg in "$@"; do
  case "$arg" in
    --live) live=1 ;;
    --write-prometheusrule) write_rule=1 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-monitoring: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

# prometheusrule_sync check|write: infra/k8s/prometheusrule.yaml is its own header (everything
# before the line "  groups:") followed by dashboards/alerts.yaml from its "groups:" line on,
# indented by two spaces, so that spec.groups is the rules file's groups, comments included.
prometheusrule_sync() {
  python3 -B - "$1" <<'PY'
import sys
mode = sys.argv[1]
src, dst = "dashboards/alerts.yaml", "infra/k8s/prometheusrule.yaml"
lines = open(src, encoding="utf-8").read().splitlines()
starts = [i for i, line in enumerate(lines) if line.startswith("groups:")]
if len(starts) != 1:
    print(f"{src}: expected one top-level 'groups:' line, found {len(starts)}")
    sys.exit(1)
body = ["  " + line if line.strip() else "" for line in lines[starts[0]:]]
text = open(dst, encoding="utf-8").read().splitlines()
heads = [i for i, line in enumerate(text) if line.startswith("  groups:")]
if len(heads) != 1 or "spec:" not in text[:heads[0]]:
    print(f"{dst}: expected a 'spec:' line followed by one '  groups:' line")
    sys.exit(1)
want = text[:heads[0]] + body
if mode == "write":
    if want != text:
        with open(dst, "w", encoding="utf-8") as f:
            f.write("\n".join(want) + "\n")
        print(f"wrote {dst}: spec.groups = groups of {src}")
    else:
        print(f"{dst} already matches {src}")
    sys.exit(0)
if want != text:
    import difflib
    diff = list(difflib.unified_diff(text, want, dst, f"{dst} as generated from {src}", lineterm="", n=1))
    print("\n".join(diff[:40]))
    print(f"{dst} differs from {src}: run scripts/check-monitoring.sh --write-prometheusrule")
    sys.exit(1)
print(f"checked: {dst} spec.groups is {src} ({len(body)} lines)")
PY
}

if [ "$write_rule" = 1 ]; then
  prometheusrule_sync write
  exit $?
fi

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
        "keywatch_processing_seconds", "keywatch_aws_request_duration_seconds",
        "keywatch_scan_duration_seconds", "keywatch_violation_open_duration_seconds"]
OTHER = ["keywatch_aws_requests_total", "keywatch_events_total", "keywatch_findings_total",
         "keywatch_emit_failed_entries_total", "keywatch_messages_total",
         "keywatch_coalesced_checks_total", "keywatch_enrichment_skipped_total",
         "keywatch_inflight_messages", "keywatch_queue_messages", "keywatch_build_info",
         "keywatch_last_message_timestamp_seconds", "keywatch_scan_users_checked_total",
         "keywatch_scan_failing_users_total", "keywatch_scan_last_success_timestamp_seconds",
         "keywatch_loaded_exceptions", "keywatch_expiring_exceptions", "keywatch_exceptions_reload_failures_total",
         "keywatch_suppressed_findings_total", "keywatch_open_violations",
         "keywatch_oldest_open_violation_age_seconds", "keywatch_violation_sla_seconds",
         "keywatch_findings_dropped_total", "keywatch_quarantines_total"]
NAMES = set(OTHER) | set(HIST) | {h + s for h in HIST for s in ("_bucket", "_sum", "_count")}
LABELS = {
    "status": {"FAILED", "PASSED"},
    "service": {"sqs", "iam", "eventbridge", "sts", "organizations", "securityhub", "ssm", "s3", "dynamodb"},
    "operation": {"ReceiveMessage", "DeleteMessageBatch", "GetQueueAttributes", "ListAccessKeys",
                  "GetAccessKeyLastUsed", "GetAccountSummary", "GetUser", "PutEvents", "AssumeRole",
                  "GetCallerIdentity", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "ListAccounts", "GetQueueUrl",
                  "SendMessageBatch", "ListUsers", "BatchImportFindings", "BatchUpdateFindings", "GetParameter", "HeadObject",
                  "GetObject", "DescribeTable", "GetItem", "PutItem", "UpdateItem", "Query", "Scan"},
    "outcome": {"ok", "throttled", "error", "finding", "compliant", "ignored", "failed_call", "invalid",
                "foreign_account", "superseded", "identical", "rotation_in_progress"},
    "event_name": {"CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey", "other", "unknown", "recheck"},
    "result": {"deleted", "retried", "invalid", "released", "complete", "errors"},
    "queue": {"input", "dlq"},
    "state": {"visible", "in_flight"},
    "how": {"in_flight", "recent"},
    "reason": {"unreadable", "invalid", "superseded", "identical"},
    "suppressed": {"true", "false"},
    "action": {"deactivated", "withheld"},
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

# $job and $instance: multi-value query variables over keywatch_build_info, All by default,
# and every selector of every target filters on both.
FILTERS = {"job": 'job=~"$job"', "instance": 'instance=~"$instance"'}
for name, want_query in (("job", "label_values(keywatch_build_info, job)"),
                         ("instance", 'label_values(keywatch_build_info{job=~"$job"}, instance)')):
    found = [v for v in variables if v.get("name") == name]
    if not found:
        errors.append(f"templating has no variable {name}")
        continue
    v = found[0]
    query = v.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    if v.get("type") != "query" or query != want_query:
        errors.append(f"variable {name}: want type query, query {want_query!r}; got {v.get('type')!r}, {query!r}")
    if not (v.get("multi") and v.get("includeAll")):
        errors.append(f"variable {name}: want multi and includeAll (All)")
    if not uses_var(v.get("datasource")):
        errors.append(f"variable {name}: datasource is not the ${{datasource}} variable")
    if v.get("allValue"):
        errors.append(f"variable {name}: allValue {v['allValue']!r} would also match other jobs' series")

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
        for sel in re.finditer(r"(?<![\w:])(keywatch_[a-z0-9_]+|up)(?![\w:(])(\{[^}]*\})?", t.get("expr", "")):
            missing = [f for f in FILTERS.values() if f not in (sel.group(2) or "")]
            if missing:
                errors.append(f"{where} target {t.get('refId')}: {sel.group(0)} lacks {', '.join(missing)}")
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
print(f"checked: uid keywatch, {n_panels} panels, {n_targets} targets, all on ${{datasource}} and filtered by $job, $instance; "
      f"{len(sources)} expressions/lines match the metric contract")
PY
}
check "dashboard structure and metric contract (keywatch.json, alerts, tests, sample)" lint_dashboard

# Every alert has a runbook_url "docs/runbook.md#<anchor>" whose anchor is a heading of
# docs/runbook.md under GitHub's rules (scripts/kwtools/markdown.py, as for check-links.py),
# and the heading is the alert's name; every "## Keywatch..." section is
# an alert that exists.
check_runbook() {
  python3 -B - "$root" <<'PY'
import re, sys
root = sys.argv[1]
sys.path.insert(0, f"{root}/tests")
sys.path.insert(0, f"{root}/scripts")
import promql_check  # noqa: E402
from kwtools import markdown  # noqa: E402

RUNBOOK = "docs/runbook.md"
headings = markdown.headings(f"{root}/{RUNBOOK}")
anchors = {anchor for _, _, anchor in headings}
errors = []
alerts = [r for r in promql_check.rules(f"{root}/dashboards/alerts.yaml") if r["kind"] == "alert"]
for r in alerts:
    url = r["annotations"].get("runbook_url")
    if not url:
        errors.append(f"{r['name']}: no runbook_url annotation")
        continue
    m = re.fullmatch(r"(docs/runbook\.md)#([^#\s]+)", url)
    if not m:
        errors.append(f"{r['name']}: runbook_url {url!r} is not {RUNBOOK}#<anchor>")
        continue
    if m.group(2) not in anchors:
        errors.append(f"{r['name']}: runbook_url anchor #{m.group(2)} is no heading of {RUNBOOK}")
    elif m.group(2) != r["name"].lower():
        errors.append(f"{r['name']}: runbook_url anchor #{m.group(2)} is not the alert's own section #{r['name'].lower()}")
names = {r["name"] for r in alerts}
for level, text, _ in headings:
    if level == 2 and text.startswith("Keywatch") and text not in names:
        errors.append(f"{RUNBOOK}: section '## {text}' names no alert in dashboards/alerts.yaml")
for e in errors:
    print(e)
if errors:
    sys.exit(1)
print(f"checked: {len(alerts)} alerts, each runbook_url resolves to its own section of {RUNBOOK}")
PY
}
check "every alert's runbook_url resolves to a heading of docs/runbook.md" check_runbook

check "infra/k8s/prometheusrule.yaml carries the groups of dashboards/alerts.yaml" prometheusrule_sync check

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

# without_scans SRC DST: SRC without the keywatch_scan_* metrics (and their HELP/TYPE lines),
# what a worker that has never scanned exposes; replaced in one rename.
without_scans() {
  grep -v '^\(# [A-Z]* \)\{0,1\}keywatch_scan_' "$1" >"$2.new" && mv "$2.new" "$2"
}

live_check() {
  command -v prometheus >/dev/null || { echo "prometheus binary not found"; return 1; }
  local http_port noscan_port prom_port base
  http_port=$(free_port) && noscan_port=$(free_port) && prom_port=$(free_port) || return 1
  base="http://127.0.0.1:$prom_port"
  mkdir -p "$work/www" "$work/www-noscan" "$work/tsdb"
  cp dashboards/testdata/keywatch-sample.prom "$work/www/metrics"
  without_scans "$work/www/metrics" "$work/www-noscan/metrics" || return 1
  python3 -m http.server "$http_port" --bind 127.0.0.1 --directory "$work/www" \
    >"$work/http.log" 2>&1 &
  pids+=($!)
  python3 -m http.server "$noscan_port" --bind 127.0.0.1 --directory "$work/www-noscan" \
    >"$work/http-noscan.log" 2>&1 &
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
  # A worker that has never scanned: no keywatch_scan_* series at all. Every panel must still
  # show data for it (tests/e2e/monitoring.rs requires that of a real worker without scans).
  - job_name: keywatch-noscan
    static_configs:
      - targets: ["127.0.0.1:$noscan_port"]
  # A second job without keywatch metrics: the dashboard's \$job must leave its target out.
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$prom_port"]
EOF
  promtool check config "$work/prometheus.yml" || return 1
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
  pids+=($!)
  echo "prometheus pid ${pids[-1]} on 127.0.0.1:$prom_port, metrics served on 127.0.0.1:$http_port (without scans: $noscan_port)"
  if ! wait_for "$base/api/v1/query?query=count(up%7Bjob%3D~%22keywatch%7Ckeywatch-noscan%22%7D%3D%3D1)%3D%3D2" 30; then
    tail -n 20 "$work/prometheus.log"
    return 1
  fi
  # Let a few scrapes land, then double every counter and histogram sample so that rates are
  # non-zero and quantiles are numbers rather than NaN, set the last-message time to now and
  # the last successful scan to three hours ago; then let a few more scrapes land.
  sleep 3
  python3 - "$work/www/metrics" <<'PY'
import os, re, sys, time
path = sys.argv[1]
out = []
for line in open(path, encoding="utf-8"):
    if line.startswith("keywatch_last_message_timestamp_seconds "):
        line = f"keywatch_last_message_timestamp_seconds {int(time.time())}\n"
    if line.startswith("keywatch_scan_last_success_timestamp_seconds "):
        line = f"keywatch_scan_last_success_timestamp_seconds {int(time.time()) - 3 * 3600}\n"
    m = re.match(r"^(keywatch_\w+(?:_total|_bucket|_sum|_count))(\{[^}]*\})? (\S+)$", line.rstrip("\n"))
    if m:
        line = f"{m.group(1)}{m.group(2) or ''} {float(m.group(3)) * 2:g}\n"
    out.append(line)
with open(path + ".new", "w", encoding="utf-8") as f:
    f.writelines(out)
os.replace(path + ".new", path)
PY
  without_scans "$work/www/metrics" "$work/www-noscan/metrics" || return 1
  sleep 4
  python3 tests/promql_check.py --prometheus "$base" \
    --dashboard dashboards/keywatch.json --rules dashboards/alerts.yaml \
    --require-data-all-panels-except --nan-is-empty | tee "$work/promql.out" || return 1
  if ! grep -Eq '^OK +panel "Worker up" \[A\] +results=2 ' "$work/promql.out"; then
    echo 'panel "Worker up" does not show exactly the two keywatch targets (job prometheus is scraped too)'
    return 1
  fi
  # Every panel again for the worker that never scanned alone: the scan panels must fall back
  # to a value ("none in 7 d", "no scan", 0) rather than show nothing.
  echo "live: job keywatch-noscan alone (no keywatch_scan_* series)"
  python3 tests/promql_check.py --prometheus "$base" --dashboard dashboards/keywatch.json \
    --var job=keywatch-noscan --require-data-all-panels-except --nan-is-empty \
    | tee "$work/promql-noscan.out" || return 1
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
  sed -n '/^\(OK\|ERROR\|NODATA\|NOTE\|summary\|rules loaded\|live: \|promql_check: \$\)/s/^/        /p' "$work/out" | head -n 120
fi

# ------------------------------------------------------------------------------ summary

if [ "$failed" -gt 0 ]; then
  printf 'failed checks:\n'
  printf '  - %s\n' "${failed_names[@]}"
fi
echo "check-monitoring: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
