#!/usr/bin/env python3
"""Evaluate every PromQL expression of the keywatch dashboard and alert rules.

Where it sits: the monitoring side of keywatch. dashboards/keywatch.json and
dashboards/alerts.yaml hold PromQL that no compiler checks; this script pulls every
expression out of them and

  * online (--prometheus URL): runs each one through GET /api/v1/query on a real
    Prometheus and reports whether it parsed and how many series it returned; with
    --expect-data / --require-data-all-panels-except it also fails when a panel that
    should show data is empty (for an end-to-end test that scrapes a running worker);
  * offline (--emit-rule-file PATH): writes the expressions as recording rules so that
    `promtool check rules PATH` parses them (scripts/check-monitoring.sh does this).

Standard library only: the rules file is read with a small parser for the YAML subset
that alerts.yaml uses (block mappings and sequences, plain and quoted scalars, `|` and
`>` block scalars). When PyYAML happens to be importable its reading is compared with
the small parser's, so a drift between the two is reported instead of hidden.

Grafana variables are replaced before evaluation: $__rate_interval (default 1m),
$__interval (15s), $__range (1h) and their ${...} / _s / _ms forms. The dashboard's own
query variables ($job, $instance: label_values(...)) are resolved online as Grafana does
for the selection the dashboard opens with (All: every value, regex-escaped, joined as
(a|b)); offline they become `.+`; --var NAME=VALUE sets one explicitly.

Exit status: 0 when every expression parsed and every required panel had data,
1 otherwise, 2 on usage errors or when Prometheus cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass
class Expr:
    source: str  # "dashboard" or "rules"
    owner: str  # panel title or alert/record name
    ref: str  # Grafana refId, or "" for rules
    raw: str  # as written
    panel_id: int | None = None
    hidden: bool = False
    query: str = ""  # after variable substitution
    # filled in online
    status: str = ""  # ok | error
    error: str = ""
    results: int = 0
    nan_results: int = 0
    required: bool = False

    def name(self) -> str:
        if self.source == "dashboard":
            return f'panel "{self.owner}" [{self.ref}]'
        return f"rule {self.owner}"


# ---------------------------------------------------------------------------- dashboard


def walk_panels(panels):
    """Yield every panel, including those nested in collapsed rows."""
    for panel in panels or []:
        yield panel
        yield from walk_panels(panel.get("panels"))


def dashboard_exprs(path: str) -> list[Expr]:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out = []
    for panel in walk_panels(dash.get("panels")):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if not expr:
                continue
            out.append(
                Expr(
                    source="dashboard",
                    owner=panel.get("title", f"panel {panel.get('id')}"),
                    ref=target.get("refId", "?"),
                    raw=expr,
                    panel_id=panel.get("id"),
                    hidden=bool(target.get("hide")),
                )
            )
    return out


# ---------------------------------------------------------------------------- rules YAML

_ITEM = re.compile(r"^(\s*)-\s+([A-Za-z_][\w-]*):(?:\s+(.*)|\s*)$")
_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*):(?:\s+(.*)|\s*)$")
_HEADER = re.compile(r"^\s*(?:-\s+)?(alert|record):")
_BLOCK = re.compile(r"^([|>])([+-]?)(\d?)([+-]?)\s*(?:#.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blank_or_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def _strip_plain_comment(text: str) -> str:
    # In a plain scalar, " #" starts a comment.
    m = re.search(r"\s+#", text)
    return text[: m.start()] if m else text


def _read_value(lines: list[str], i: int, key_indent: int, first: str) -> str:
    """Read the scalar that starts as `first` after `key:` on lines[i]."""
    first = (first or "").rstrip()
    m = _BLOCK.match(first)
    if m:
        style = m.group(1)
        chomp = m.group(2) or m.group(4)
        explicit = int(m.group(3)) if m.group(3) else None
        body: list[str] = []
        block_indent = key_indent + explicit if explicit else None
        j = i + 1
        while j < len(lines):
            line = lines[j]
            if not line.strip():
                body.append("")
                j += 1
                continue
            ind = _indent(line)
            if ind <= key_indent:
                break
            if block_indent is None:
                block_indent = ind
            if ind < block_indent:
                break
            body.append(line[block_indent:])
            j += 1
        # trailing blank lines belong to chomping, not content
        while body and body[-1] == "":
            body.pop()
        if style == "|":
            text = "\n".join(body)
        else:
            text, para = "", []
            for b in body:
                if b == "":
                    text += " ".join(para) + "\n"
                    para = []
                elif b.startswith((" ", "\t")):  # more-indented lines are kept as is
                    if para:
                        text += " ".join(para) + "\n"
                        para = []
                    text += b + "\n"
                else:
                    para.append(b)
            text += " ".join(para)
        return text if chomp == "-" else text + "\n"
    if first.startswith(("'", '"')):
        quote = first[0]
        buf = first
        j = i
        while True:
            body = buf[1:]
            if quote == "'":
                end = body.replace("''", "\0\0").find("'")
            else:
                end = -1
                k = 0
                while k < len(body):
                    if body[k] == "\\":
                        k += 2
                        continue
                    if body[k] == '"':
                        end = k
                        break
                    k += 1
            if end >= 0:
                inner = body[:end]
                break
            j += 1
            if j >= len(lines):
                raise ValueError(f"line {i + 1}: unterminated quoted scalar")
            buf += " " + lines[j].strip()
        if quote == "'":
            return inner.replace("''", "'")
        return json.loads('"' + inner.replace("\t", "\\t") + '"')
    # plain scalar, possibly continued on more-indented lines
    parts = [_strip_plain_comment(first).strip()] if first else []
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if _blank_or_comment(line):
            if not line.strip():
                j += 1
                continue
            break
        if _indent(line) <= key_indent:
            break
        parts.append(_strip_plain_comment(line).strip())
        j += 1
    return " ".join(p for p in parts if p)


def _read_mapping(lines: list[str], i: int, key_indent: int, in_block: list[bool]) -> dict[str, str]:
    """Read the block mapping of scalars nested under `key:` on lines[i] (labels, annotations)."""
    out: dict[str, str] = {}
    child = None
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if in_block[j] or _blank_or_comment(line):
            j += 1
            continue
        ind = _indent(line)
        if ind <= key_indent:
            break
        if child is None:
            child = ind
        if ind == child:
            km = _KEY.match(line)
            if km:
                out[km.group(2)] = _read_value(lines, j, child, km.group(3) or "")
        j += 1
    return out


def rules_stdlib(path: str) -> list[dict]:
    """Every rule as {group, kind, name, expr, labels, annotations}, read without PyYAML."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    # Lines inside block scalars are text, not structure: a description may contain "- alert:".
    in_block = [False] * len(lines)
    block_key_indent = None
    for n, line in enumerate(lines):
        if block_key_indent is not None:
            if not line.strip() or _indent(line) > block_key_indent:
                in_block[n] = True
                continue
            block_key_indent = None
        m = _ITEM.match(line) or _KEY.match(line)
        if m and not _blank_or_comment(line) and _BLOCK.match((m.group(3) or "").strip()):
            block_key_indent = m.start(2)
    rules: list[dict] = []
    group = None
    i = 0
    while i < len(lines):
        m = _ITEM.match(lines[i])
        if not m or in_block[i] or _blank_or_comment(lines[i]):
            i += 1
            continue
        key_indent = m.start(2)  # the item's keys line up with the first one, after "- "
        # Collect this sequence item's own keys: the one on the dash line, then keys at key_indent.
        entries = [(i, m.group(2), m.group(3) or "")]
        j = i + 1
        while j < len(lines):
            line = lines[j]
            if in_block[j] or _blank_or_comment(line):
                j += 1
                continue
            ind = _indent(line)
            if ind < key_indent:
                break
            if ind == key_indent:
                km = _KEY.match(line)
                if km:
                    entries.append((j, km.group(2), km.group(3) or ""))
            j += 1
        keys: dict[str, str] = {}
        maps: dict[str, dict[str, str]] = {"labels": {}, "annotations": {}}
        names = {key for (_, key, _) in entries}
        for (ln, key, first) in entries:
            if key in ("alert", "record", "expr") or (key == "name" and "rules" in names):
                keys[key] = _read_value(lines, ln, key_indent, first)
            elif key in maps and not first.strip():
                maps[key] = _read_mapping(lines, ln, key_indent, in_block)
        if "rules" in names and "name" in keys:
            group = keys["name"].strip()
        name = keys.get("alert") or keys.get("record")
        if name is not None:
            if "expr" not in keys:
                raise ValueError(f"{path}:{i + 1}: rule {name.strip()} has no expr")
            kind = "alert" if "alert" in keys else "record"
            rules.append({"group": group, "kind": kind, "name": name.strip(), "expr": keys["expr"], **maps})
        # Nested items (the rules of a group) are found by going on line by line.
        i += 1
    headers = sum(
        1 for n, line in enumerate(lines) if _HEADER.match(line) and not in_block[n] and not _blank_or_comment(line)
    )
    if headers != len(rules):
        raise ValueError(
            f"{path}: found {headers} alert/record lines but parsed {len(rules)} rules; "
            "the file uses YAML this parser does not support"
        )
    return rules


def rules_pyyaml(path: str) -> list[dict] | None:
    try:
        import yaml  # type: ignore
    except ImportError:
        return None
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = []
    for group in (doc or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            out.append(
                {
                    "group": str(group.get("name")),
                    "kind": "alert" if "alert" in rule else "record",
                    "name": str(rule.get("alert") or rule.get("record")),
                    "expr": str(rule.get("expr")),
                    "labels": {str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                    "annotations": {str(k): str(v) for k, v in (rule.get("annotations") or {}).items()},
                }
            )
    return out


def _normalized(rules: list[dict]) -> list[dict]:
    flat = lambda text: " ".join(text.split())  # noqa: E731
    return [
        {
            "group": r["group"],
            "kind": r["kind"],
            "name": r["name"],
            "expr": flat(r["expr"]),
            "labels": {k: flat(v) for k, v in r["labels"].items()},
            "annotations": {k: flat(v) for k, v in r["annotations"].items()},
        }
        for r in rules
    ]


def rules(path: str, use_pyyaml: bool = True) -> list[dict]:
    """Every rule (see rules_stdlib); cross-checked against PyYAML when it is importable."""
    got = rules_stdlib(path)
    if use_pyyaml:
        ref = rules_pyyaml(path)
        if ref is not None and _normalized(ref) != _normalized(got):
            raise ValueError(
                f"{path}: the stdlib YAML reader disagrees with PyYAML:\n"
                f"  stdlib: {_normalized(got)}\n  pyyaml: {_normalized(ref)}"
            )
    return got


def rules_exprs(path: str, use_pyyaml: bool = True) -> list[Expr]:
    return [Expr(source="rules", owner=r["name"], ref="", raw=r["expr"]) for r in rules(path, use_pyyaml)]


# ---------------------------------------------------------------------------- substitution


def substitute(expr: str, rate_interval: str, interval: str, range_: str, variables: dict[str, str] | None = None) -> str:
    secs = duration_seconds(range_)
    isecs = duration_seconds(interval)
    values = dict(variables or {})
    values.update(
        {
            "__rate_interval": rate_interval,
            "__interval": interval,
            "__interval_ms": str(int(isecs * 1000)),
            "__range": range_,
            "__range_s": str(int(secs)),
            "__range_ms": str(int(secs * 1000)),
        }
    )

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))

    # Longest names first is implicit: \w+ is greedy, so $__interval_ms is not cut at _interval.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


# Dashboard template variables of type `query` (label_values(...)), substituted the way
# Grafana's Prometheus data source does it for the selection the dashboard starts on.

_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*?)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*$", re.S)


@dataclass
class Variable:
    name: str
    query: str  # label_values(selector, label) or label_values(label)
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    current: list[str] | None = None  # the saved selection; None or ["$__all"] means All
    value: str = ""  # after resolution
    how: str = ""


def dashboard_variables(path: str) -> list[Variable]:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out = []
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        current = (v.get("current") or {}).get("value")
        if isinstance(current, str):
            current = [current]
        out.append(
            Variable(
                name=v["name"],
                query=query or v.get("definition", ""),
                multi=bool(v.get("multi")),
                include_all=bool(v.get("includeAll")),
                all_value=v.get("allValue") or None,
                current=current or None,
            )
        )
    return out


def regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value or All selection inside a PromQL =~ string."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def format_selection(var: Variable, values: list[str]) -> str:
    if not var.multi and not var.include_all:
        return values[0] if values else ""
    escaped = [regex_escape(v) for v in values]
    if len(escaped) == 1:
        return escaped[0]
    return "(" + "|".join(escaped) + ")"


def resolve_variables(
    variables: list[Variable], overrides: dict[str, str], base: str | None, timeout: float, rate_interval: str,
    interval: str, range_: str,
) -> list[str]:
    """Give each variable its value: --var, else its label values from Prometheus (online),
    else `.+` (offline, for parsing). Returns notes to print."""
    notes = []
    done: dict[str, str] = {}
    for var in variables:
        if var.name in overrides:
            var.value, var.how = overrides[var.name], "--var"
        elif base is None:
            var.value, var.how = ".+", "offline"
        else:
            m = _LABEL_VALUES.match(var.query)
            if not m:
                raise ValueError(f"variable ${var.name}: cannot evaluate query {var.query!r} (only label_values)")
            selector = substitute(m.group(1) or "", rate_interval, interval, range_, done)
            params = [("match[]", selector)] if selector else []
            url = f"{base}/api/v1/label/{urllib.parse.quote(m.group(2))}/values"
            if params:
                url += "?" + urllib.parse.urlencode(params)
            _, body = http_get_json(url, timeout)
            if body.get("status") != "success":
                raise ValueError(f"variable ${var.name}: {body.get('errorType')}: {body.get('error')}")
            options = sorted(body.get("data") or [])
            chosen = options
            if var.current and var.current != ["$__all"] and not (var.include_all and var.current == ["All"]):
                chosen = [v for v in var.current if v in options]
            elif var.include_all and var.all_value:
                chosen = None
            elif not var.include_all:
                chosen = options[:1]
            if chosen is None:
                var.value, var.how = var.all_value or "", "All (allValue)"
            else:
                var.value = format_selection(var, chosen)
                var.how = f"{'All of ' if chosen == options and var.include_all else ''}{len(chosen)} value(s) of {var.query}"
            if not options:
                notes.append(f"NOTE   variable ${var.name}: {var.query} returned no values, so its panels have no data")
        done[var.name] = var.value
    return notes


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+)(ms|s|m|h|d|w|y)", text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"not a Prometheus duration: {text!r}")
    return total


# ---------------------------------------------------------------------------- online


def http_get_json(url: str, timeout: float) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, {"status": "error", "errorType": f"http_{e.code}", "error": body[:200]}


def evaluate(base: str, e: Expr, when: str | None, timeout: float) -> None:
    params = {"query": e.query}
    if when:
        params["time"] = when
    url = f"{base}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        _, body = http_get_json(url, timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        e.status, e.error = "error", f"request failed: {err}"
        return
    if body.get("status") != "success":
        e.status = "error"
        e.error = f"{body.get('errorType', 'error')}: {body.get('error', body)}"
        return
    e.status = "ok"
    data = body.get("data") or {}
    rtype, result = data.get("resultType"), data.get("result")
    if rtype in ("vector", "matrix"):
        e.results = len(result or [])
        for series in result or []:
            sample = series.get("value") or (series.get("values") or [[0, "0"]])[-1]
            if math.isnan(float(sample[1])):
                e.nan_results += 1
    elif result is not None:  # scalar or string
        e.results = 1


def one_line(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


# ---------------------------------------------------------------------------- offline


def rule_name(e: Expr, used: set[str]) -> str:
    if e.source == "dashboard":
        slug = re.sub(r"[^A-Za-z0-9]+", "_", e.owner).strip("_").lower() or "panel"
        base = f"dashboard:p{e.panel_id}_{slug}:{e.ref}"
    else:
        base = f"rules:{re.sub(r'[^A-Za-z0-9_]+', '_', e.owner)}"
    base = re.sub(r"[^A-Za-z0-9_:]", "_", base)
    name, n = base, 2
    while name in used:
        name, n = f"{base}_{n}", n + 1
    used.add(name)
    return name


def emit_rule_file(path: str, exprs: list[Expr]) -> None:
    """Write the expressions as recording rules (JSON is valid YAML for promtool)."""
    used: set[str] = set()
    groups: dict[str, list] = {}
    for e in exprs:
        groups.setdefault(f"promql_check_{e.source}", []).append(
            {"record": rule_name(e, used), "expr": e.query}
        )
    doc = {"groups": [{"name": g, "rules": r} for g, r in groups.items()]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Parse-check and evaluate the PromQL of keywatch's dashboard and alert rules.",
        epilog="Online: --prometheus URL. Offline: --emit-rule-file PATH and/or --list.",
    )
    ap.add_argument("--prometheus", metavar="URL", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", action="append", default=[], metavar="FILE", help="Grafana dashboard JSON (repeatable)")
    ap.add_argument("--rules", action="append", default=[], metavar="FILE", help="Prometheus rules YAML (repeatable)")
    ap.add_argument(
        "--expect-data", nargs="+", action="extend", default=[], metavar="PANEL_TITLE",
        help="fail if any query of these panels returns no series",
    )
    ap.add_argument(
        "--require-data-all-panels-except", nargs="*", metavar="PANEL_TITLE", default=None,
        help="fail if any query of any panel, except those named, returns no series",
    )
    ap.add_argument("--rate-interval", default="1m", metavar="DURATION", help="value for $__rate_interval (default 1m)")
    ap.add_argument("--interval", default="15s", metavar="DURATION", help="value for $__interval (default 15s)")
    ap.add_argument("--range", dest="range_", default="1h", metavar="DURATION", help="value for $__range (default 1h)")
    ap.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="value for a dashboard variable such as $job or $instance, as Grafana would put it into the query "
        "(a regex for multi-value variables); default: online, the variable's label_values from Prometheus with "
        "the dashboard's saved selection (All); offline, .+",
    )
    ap.add_argument("--time", help="evaluation time (RFC 3339 or unix seconds); default: now")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)")
    ap.add_argument("--emit-rule-file", metavar="PATH", help="write all expressions as a promtool-checkable rule file")
    ap.add_argument("--list", action="store_true", help="print the extracted expressions (after variable substitution)")
    ap.add_argument(
        "--nan-is-empty", action="store_true",
        help="for required panels, count a result whose series are all NaN (e.g. a quantile with no traffic) as empty",
    )
    ap.add_argument("--no-pyyaml", action="store_true", help="do not cross-check the rules reader against PyYAML")
    args = ap.parse_args(argv)

    for d in (args.rate_interval, args.interval, args.range_):
        try:
            duration_seconds(d)
        except argparse.ArgumentTypeError as err:
            ap.error(str(err))
    if not args.dashboard and not args.rules:
        ap.error("give at least one --dashboard or --rules file")
    if not (args.prometheus or args.emit_rule_file or args.list):
        ap.error("give --prometheus URL, or --emit-rule-file PATH / --list for offline use")
    overrides: dict[str, str] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"\$?\w+", name):
            ap.error(f"--var wants NAME=VALUE, got {item!r}")
        overrides[name.lstrip("$")] = value

    exprs: list[Expr] = []
    variables: dict[str, Variable] = {}
    try:
        for path in args.dashboard:
            exprs += dashboard_exprs(path)
            for var in dashboard_variables(path):
                variables.setdefault(var.name, var)
        for path in args.rules:
            exprs += rules_exprs(path, use_pyyaml=not args.no_pyyaml)
    except (OSError, ValueError) as err:
        print(f"promql_check: cannot read input: {err}", file=sys.stderr)
        print("promql_check: 0 passed, 1 failed")
        return 1

    def substitute_all(base: str | None) -> list[str]:
        notes = resolve_variables(
            list(variables.values()), overrides, base, args.timeout, args.rate_interval, args.interval, args.range_
        )
        values = {v.name: v.value for v in variables.values()}
        for e in exprs:
            e.query = substitute(e.raw, args.rate_interval, args.interval, args.range_, values)
        return notes

    substitute_all(None)
    if args.list:
        for e in exprs:
            print(f"{e.name()}: {one_line(e.query, 10_000)}")
    if args.emit_rule_file:
        emit_rule_file(args.emit_rule_file, exprs)
        n_dash = sum(e.source == "dashboard" for e in exprs)
        print(
            f"promql_check: wrote {len(exprs)} expressions ({n_dash} dashboard, "
            f"{len(exprs) - n_dash} rules) to {args.emit_rule_file}"
        )
    if not args.prometheus:
        return 0

    # Which panels must have data.
    titles = {e.owner for e in exprs if e.source == "dashboard"}
    problems: list[str] = []
    required: set[str] = set(args.expect_data)
    if args.require_data_all_panels_except is not None:
        required |= titles - set(args.require_data_all_panels_except)
        for t in args.require_data_all_panels_except:
            if t not in titles:
                problems.append(f'--require-data-all-panels-except names no panel: "{t}"')
    for t in args.expect_data:
        if t not in titles:
            problems.append(f'--expect-data names no panel: "{t}"')
    for e in exprs:
        e.required = e.source == "dashboard" and e.owner in required and not e.hidden

    base = args.prometheus.rstrip("/")
    try:
        code, info = http_get_json(f"{base}/api/v1/status/buildinfo", args.timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(f"promql_check: cannot reach Prometheus at {base}: {err}", file=sys.stderr)
        return 2
    version = (info.get("data") or {}).get("version", f"HTTP {code}")
    print(f"promql_check: Prometheus {version} at {base}; $__rate_interval={args.rate_interval}")
    try:
        notes = substitute_all(base)
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(f"ERROR  dashboard variables: {err}")
        print("promql_check: 0 passed, 1 failed")
        return 1
    for var in variables.values():
        print(f"promql_check: ${var.name} = {var.value} ({var.how})")
    for note in notes:
        print(note)

    passed = failed = 0
    for e in exprs:
        evaluate(base, e, args.time, args.timeout)
        if e.status == "error":
            tag, ok = "ERROR", False
            detail = e.error
        elif e.required and (e.results == 0 or (args.nan_is_empty and e.nan_results == e.results)):
            tag, ok = "NODATA", False
            detail = f"results={e.results} nan={e.nan_results} (data required)"
        else:
            tag, ok = "OK", True
            detail = f"results={e.results}"
            if e.nan_results:
                detail += f" nan={e.nan_results}"
            if e.required:
                detail += " (data required)"
        passed += ok
        failed += not ok
        print(f"{tag:<6} {e.name():<60} {detail} | {one_line(e.query)}")
    for p in problems:
        print(f"ERROR  {p}")
        failed += 1

    errors = sum(e.status == "error" for e in exprs)
    with_data = sum(e.status == "ok" and e.results > 0 for e in exprs)
    missing = sum(
        e.status == "ok" and e.required and (e.results == 0 or (args.nan_is_empty and e.nan_results == e.results))
        for e in exprs
    )
    print(
        f"summary: {len(exprs)} expressions, {len(exprs) - errors} parsed, {errors} errors, "
        f"{with_data} with data, {missing} required without data"
    )
    print(f"promql_check: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
