#!/usr/bin/env python3
"""`keywatch scan` beside Prowler's `iam_user_two_active_access_key`, on one moto server.

Set-up (not measured): one moto server; --users-per-account IAM users (500 by
default) in each of two accounts, the own account 123456789012 (the static
test credentials act there) and a member account (--member-account) reached
through `sts:AssumeRole` into arn:aws:iam::<member>:role/<--member-role>
(moto lets any role be assumed and then acts inside that account). Users are
spread evenly over five key states, so the truth is known:

  no-key, one-active, two-active (FAILS CIS 1.13), active-inactive,
  two-inactive

Their names use only letters, digits, `-` and `_`. A third, small account
(--odd-account) holds users whose names use the other characters IAM allows
(`+=,.@`), one with two active keys and one with one active key per
character: moto writes the credential report without quoting, so a comma
shifts that row's columns, and Prowler reads this check from the report.

Measured, each run alone on the server, moto's request recorder on:

- keywatch: the release binary, `keywatch scan --dry-run --include-passed`,
  KEYWATCH_ACCOUNTS=<member>, KEYWATCH_MEMBER_ROLE=<role>, with the default
  IAM rate (20 requests/s per account) and with
  KEYWATCH_IAM_RATE_PER_ACCOUNT=0 (unlimited); optionally also
  --no-last-use (variant keywatch-no-last-use). Findings are read from its
  standard output (JSON lines, one `{"scan_summary": ...}` per account).
- prowler: `prowler aws --checks iam_user_two_active_access_key -M
  json-ocsf` (its own venv, .venv-prowler), once per account: the own
  account with the static credentials, the member account with `--role
  arn:aws:iam::<member>:role/<role>` (Prowler assumes it through STS). It
  reaches moto through AWS_ENDPOINT_URL. Findings are read from its OCSF
  JSON file.

Every run: wall time (start → exit), CPU (utime+stime of the child from
wait4, its children included), peak RSS (VmHWM from /proc/<pid>/status,
polled every 0.1 s; ru_maxrss is not used, see benches/README.md), AWS
requests by operation (moto's recording; this script's own calls are left
out by their User-Agent), moto's CPU and the other processes' CPU meanwhile.
Every process is pointed at a closed local proxy port (HTTPS_PROXY), so a
request that escaped the emulator fails at once instead of leaving the
machine.

Compared: each tool's failing users against the truth and against each other,
user by user; keywatch's IAM requests per user and ListUsers pages per 100
users against the goal (at most one IAM call per user, plus one ListUsers
page per 100 users); keywatch's wall time against Prowler's (both accounts).

Run: scripts/bench-scan.sh (makes the venvs, builds, then runs this).
Options: --users-per-account 500 --variants keywatch,keywatch-unlimited
--no-prowler --no-odd-names --json-out FILE.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from kwtools import bench, cloudtrail, emulator  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

OWN = cloudtrail.ACCOUNT
STATES = ("no-key", "one-active", "two-active", "active-inactive", "two-inactive")
FAILING_STATE = "two-active"
# (letters and digits around each character IAM allows beyond [A-Za-z0-9_-])
ODD_CHARS = "+=,.@"
PROWLER_CHECK = "iam_user_two_active_access_key"
# Closed local port: anything that does not go to 127.0.0.1 (NO_PROXY) fails
# at once through it.
NOWHERE_PROXY = "http://127.0.0.1:9"
IAM_OPS = {
    "ListUsers", "ListAccessKeys", "GetAccessKeyLastUsed", "GetUser", "GetAccountSummary",
    "GenerateCredentialReport", "GetCredentialReport",
}


# ------------------------------------------------------------------ seeding


def clients_for(moto, account, member_role):
    """boto3 IAM client acting in `account` (AssumeRole unless it is the
    own account), tagged as this script's own traffic."""
    cfg = Config(user_agent_extra=emulator.MONITOR_AGENT, retries={"max_attempts": 5, "mode": "standard"})
    kw = dict(endpoint_url=moto.url, region_name="us-east-1", config=cfg)
    creds = static_credentials()
    if account != OWN:
        creds = assume(moto, account, member_role)
    return boto3.client("iam", **kw, **creds), creds


def static_credentials():
    return dict(aws_access_key_id="testing", aws_secret_access_key="testing")


def assume(moto, account, role):
    sts = boto3.client(
        "sts", endpoint_url=moto.url, region_name="us-east-1",
        config=Config(user_agent_extra=emulator.MONITOR_AGENT), **static_credentials(),
    )
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="kwbench-seed")["Credentials"]
    return dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])


def seed_user(iam, name, state):
    iam.create_user(UserName=name)
    n = {"no-key": 0, "one-active": 1}.get(state, 2)
    keys = [iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for _ in range(n)]
    inactive = {"active-inactive": keys[1:], "two-inactive": keys}.get(state, [])
    for k in inactive:
        iam.update_access_key(UserName=name, AccessKeyId=k, Status="Inactive")


def seed(moto, account, member_role, users):
    """Creates `users` ({name: state}) in `account`."""
    iam, _ = clients_for(moto, account, member_role)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda item: seed_user(iam, *item), users.items()))
    listed = sum(len(p["Users"]) for p in iam.get_paginator("list_users").paginate())
    assert listed == len(users), (account, listed, len(users))


def plain_users(account, n):
    # Account-specific prefix: a user listed under the wrong account shows.
    return {f"u{account[-4:]}-{i:04d}_{STATES[i % len(STATES)]}": STATES[i % len(STATES)] for i in range(n)}


def odd_users():
    users = {}
    for i, c in enumerate(ODD_CHARS):
        users[f"odd{i}{c}two"] = "two-active"
        users[f"odd{i}{c}one"] = "one-active"
    users["dev.ops+ci=x,y@corp"] = "two-active"
    return users


# ------------------------------------------------------------------ one run


def measure(moto, cmd, env, stdout_path, timeout, label):
    """Runs cmd alone on the server with the recorder on: wall, CPU, peak
    RSS, requests by operation, moto's and the other processes' CPU."""
    moto.recorder("reset-recording")
    moto.recorder("start-recording")
    load = bench.OtherLoad(moto.proc.pid)
    log_path = stdout_path + ".log"
    with open(stdout_path, "wb") as out, open(log_path, "wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=log, stdin=subprocess.DEVNULL)
    hwm_kb = cpu = None
    code = rusage = None
    deadline = started + timeout
    while True:
        cpu = bench.proc_cpu_seconds(proc.pid) or cpu
        hwm_kb = bench.proc_status_kb(proc.pid) or hwm_kb
        code, rusage = bench.wait4(proc, 0)
        if code is not None:
            break
        if time.monotonic() >= deadline:
            bench.kill(proc)
            code = "killed (timeout)"
            break
        time.sleep(0.1)
    wall = time.monotonic() - started
    cpu_s = (rusage.ru_utime + rusage.ru_stime) if rusage else cpu
    other = load.cores(cpu_s)
    moto_cpu = load.moto_seconds()
    moto.recorder("stop-recording")
    ops = emulator.count_operations(moto.recording())
    result = {
        "run": label,
        "cmd": cmd,
        "exit": code,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu_s, 2) if cpu_s is not None else None,
        "peak_rss_kb": hwm_kb,
        "calls": dict(ops),
        "calls_total": sum(ops.values()),
        "moto_cpu_s": round(moto_cpu, 1),
        "other_load": round(other, 2),
        "stdout": stdout_path,
        "log": log_path,
    }
    print(f"  {label}: exit {code}, {wall:.1f} s wall, {result['cpu_s']} s CPU, "
          f"{(hwm_kb or 0) / 1024:.1f} MB, other CPU {other:.2f} cores; calls {dict(ops)}", file=sys.stderr, flush=True)
    return result


def keywatch_env(moto, args, accounts, creds=None, rate=None):
    env = moto.env()
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = NOWHERE_PROXY
    if creds:
        env.update(AWS_ACCESS_KEY_ID=creds["aws_access_key_id"], AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"],
                   AWS_SESSION_TOKEN=creds["aws_session_token"])
    if accounts:
        env.update(KEYWATCH_ACCOUNTS=",".join(accounts), KEYWATCH_MEMBER_ROLE=args.member_role)
    if rate is not None:
        env["KEYWATCH_IAM_RATE_PER_ACCOUNT"] = str(rate)
    env.setdefault("KEYWATCH_LOG", "warn")
    return env


def run_keywatch(variant, args, accounts, env, label):
    cmd = [args.keywatch, "scan", "--dry-run", "--include-passed"]
    if variant == "keywatch-no-last-use":
        cmd.append("--no-last-use")
    out = os.path.join(args.tmp, f"{label}.jsonl")
    r = measure(args.moto, cmd, env, out, args.timeout, label)
    r["tool"] = "keywatch"
    r["variant"] = variant
    r["accounts"] = accounts
    findings, summaries, unparsed = {}, [], 0
    with open(out, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                unparsed += 1
                continue
            if "scan_summary" in obj:
                summaries.append(obj["scan_summary"])
            elif "user_name" in obj and "status" in obj and obj.get("control_id") == "CIS-AWS-1.13":
                # The root user's CIS-1.4 finding has no counterpart in Prowler's check.
                findings[(obj["account_id"], obj["user_name"])] = obj["status"]
    r["status"] = {f"{a}/{u}": s for (a, u), s in findings.items()}
    r["summaries"] = summaries
    r["unparsed_lines"] = unparsed
    return r


def run_prowler(args, account, env, label, role=None):
    outdir = os.path.join(args.tmp, label)
    os.makedirs(outdir, exist_ok=True)
    cmd = [args.prowler, "aws", "--checks", PROWLER_CHECK, "-f", "us-east-1", "-M", "json-ocsf",
           "-o", outdir, "-F", label, "-b", "-z"]
    if role:
        cmd += ["--role", f"arn:aws:iam::{account}:role/{role}"]
    r = measure(args.moto, cmd, env, os.path.join(args.tmp, f"{label}.out"), args.timeout, label)
    r["tool"] = "prowler"
    r["accounts"] = [account]
    status, accounts_seen = {}, Counter()
    files = glob.glob(os.path.join(outdir, "**", "*.ocsf.json"), recursive=True)
    r["output_files"] = files
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        items = json.loads(text) if text else []
        for item in items:
            code = item.get("status_code")
            for res in item.get("resources") or [{}]:
                name = res.get("name") or res.get("uid", "").rsplit("/", 1)[-1]
                acct = ((item.get("cloud") or {}).get("account") or {}).get("uid") or account
                accounts_seen[acct] += 1
                status[f"{acct}/{name}"] = {"FAIL": "FAILED", "PASS": "PASSED"}.get(code, code)
                r.setdefault("sample", {"uid": res.get("uid"), "name": res.get("name"), "status_code": code})
    r["status"] = status
    r["accounts_in_output"] = dict(accounts_seen)
    return r


# ------------------------------------------------------------------ comparison


def compare(truth, statuses):
    """truth: {"acct/user": state}; statuses: {tool: {"acct/user": FAILED|PASSED}}.
    Per tool: failing users found, misses, false alarms, names not in the
    truth; and the users on which the tools disagree."""
    failing = {u for u, s in truth.items() if s == FAILING_STATE}
    per_tool = {}
    for tool, st in statuses.items():
        found = {u for u, s in st.items() if s == "FAILED"}
        per_tool[tool] = {
            "failing_found": len(found),
            "missed": sorted(failing - found),
            "false_alarms": sorted(found - failing),
            "unknown_names": sorted(set(st) - set(truth)),
            "not_reported": sorted(set(truth) - set(st)),
        }
    disagreements = []
    tools = list(statuses)
    if len(tools) == 2:
        a, b = tools
        for u in sorted(set(truth) | set(statuses[a]) | set(statuses[b])):
            fa = statuses[a].get(u) == "FAILED"
            fb = statuses[b].get(u) == "FAILED"
            if fa != fb:
                disagreements.append({"user": u, "truth": truth.get(u, "(not a user)"), a: statuses[a].get(u, "–"),
                                      b: statuses[b].get(u, "–")})
    return {"truth_failing": len(failing), "tools": per_tool, "disagreements": disagreements}


def merged(results):
    out = {}
    for r in results:
        out.update(r["status"])
    return out


# ------------------------------------------------------------------ report


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def iam_calls(calls):
    return {k: v for k, v in calls.items() if k in IAM_OPS}


def report(res, args):
    users = res["users"]
    n_acc = len(res["accounts"])
    print()
    print("### keywatch scan beside Prowler on one moto server")
    print()
    print(f"Machine: {bench.machine()}. {users} IAM users in {n_acc} accounts ({args.users_per_account} each: own "
          f"{OWN}, member {args.member_account} through AssumeRole), evenly in 5 key states "
          f"({', '.join(STATES)}); {res['comparison']['truth_failing']} fail (two active keys). "
          f"moto's request recorder on (it slows moto for every run alike).")
    print()
    print("| run | accounts | wall s | CPU s | CPU ms/user | peak RSS MB | AWS requests | IAM requests/user "
          "(w/o ListUsers) | ListUsers pages per 100 users | failing found | agrees with the truth | moto CPU s | "
          "other processes' CPU (cores) | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [(r["run"], r) for r in res["keywatch"]]
    if res.get("prowler"):
        rows += [(r["run"], r) for r in res["prowler"]]
        p = res["prowler"]
        rows.append(("prowler (both accounts, one after the other)", {
            "accounts": sum((r["accounts"] for r in p), []), "wall_s": sum(r["wall_s"] for r in p),
            "cpu_s": sum(r["cpu_s"] or 0 for r in p), "peak_rss_kb": max((r["peak_rss_kb"] or 0) for r in p),
            "calls": sum((Counter(r["calls"]) for r in p), Counter()), "moto_cpu_s": sum(r["moto_cpu_s"] for r in p),
            "other_load": max(r["other_load"] for r in p), "exit": ",".join(str(r["exit"]) for r in p),
            "check": res["comparison_prowler"],
        }))
    for label, r in rows:
        n_users = users if len(r["accounts"]) == n_acc else args.users_per_account * len(r["accounts"])
        calls = r["calls"]
        iam = iam_calls(calls)
        per_user = (sum(iam.values()) - iam.get("ListUsers", 0)) / n_users
        pages = iam.get("ListUsers", 0) / (n_users / 100)
        check = r.get("check")
        if check is None and r.get("tool") == "keywatch":
            check = res["comparison_keywatch"][r["run"]]
        if check is not None:
            t = check
            ok = not (t["missed"] or t["false_alarms"])
            agree = "yes" if ok else f"NO: {len(t['missed'])} missed, {len(t['false_alarms'])} false"
            found = t["failing_found"]
        else:
            agree, found = "(one account: see the row below)", "–"
        print(f"| {label} | {len(r['accounts'])} | {r['wall_s']:.1f} | {fmt(r['cpu_s'], '.2f')} | "
              f"{fmt(r['cpu_s'] * 1e3 / n_users if r['cpu_s'] is not None else None, '.2f')} | "
              f"{fmt(r['peak_rss_kb'] / 1024 if r['peak_rss_kb'] else None, '.1f')} | {sum(calls.values())} | "
              f"{per_user:.2f} | {pages:.2f} | {found} | {agree} | {r['moto_cpu_s']:.1f} | {r['other_load']:.2f} | {r['exit']} |")
    print()
    for label, r in rows:
        print(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(r["calls"].items())))
    for r in res["keywatch"]:
        for s in r["summaries"]:
            print(f"  - {r['run']} account {s.get('account_id')}: {s.get('users_checked')} users checked, "
                  f"{s.get('users_failing')} failing, {s.get('keys_active')} active keys, {s.get('errors')} errors, "
                  f"{s.get('duration_seconds', 0):.1f} s")
    if res.get("prowler"):
        both = res["comparison_both"]
        print()
        d = both["disagreements"]
        print(f"keywatch (default rate) and Prowler disagree on {len(d)} of {users} users"
              + (":" if d else "."))
        for x in d[:20]:
            print(f"- {x['user']}: truth {x['truth']}, keywatch {x['keywatch']}, prowler {x['prowler']}")
        if len(d) > 20:
            print(f"- … {len(d) - 20} more (see --json-out)")
    odd = res.get("odd")
    if odd:
        print()
        print(f"Odd names (account {args.odd_account}, {len(odd['truth'])} users, names with `{ODD_CHARS}`):")
        print()
        print("| user | truth | keywatch | prowler |")
        print("|---|---|---|---|")
        names = sorted(set(odd["truth"]) | set(odd["keywatch"]) | set(odd.get("prowler", {})))
        for u in names:
            print(f"| `{u.split('/', 1)[1]}` | {odd['truth'].get(u, '(not a user)')} | {odd['keywatch'].get(u, '–')} | "
                  f"{odd.get('prowler', {}).get(u, '–') if 'prowler' in odd else 'not run'} |")
    goals(res, args)


def goals(res, args):
    users = res["users"]
    print()
    print("| goal | measured | status |")
    print("|---|---|---|")
    for r in res["keywatch"]:
        iam = iam_calls(r["calls"])
        lu = iam.get("ListUsers", 0)
        per_user = (sum(iam.values()) - lu) / users
        pages = lu / (users / 100)
        ok = per_user <= 1.0 and pages <= 1.0
        detail = ", ".join(f"{k} {v}" for k, v in sorted(iam.items()))
        print(f"| ≤ 1 IAM call per user + 1 ListUsers page per 100 users ({r['run']}) | {per_user:.2f} calls/user "
              f"({detail}); {pages:.2f} ListUsers pages per 100 users (moto ignores MaxItems: one page per account) | "
              f"{'met' if ok else 'MISSED'} |")
    if res.get("prowler"):
        kw = res["keywatch"][0]
        pw = sum(r["wall_s"] for r in res["prowler"])
        faster = kw["wall_s"] < pw
        print(f"| faster than Prowler ({kw['run']} vs Prowler on both accounts) | {kw['wall_s']:.1f} s vs {pw:.1f} s "
              f"({pw / kw['wall_s']:.1f}×) | {'yes' if faster else 'NO'} |")
        for r in res["keywatch"][1:]:
            print(f"| faster than Prowler ({r['run']}) | {r['wall_s']:.1f} s vs {pw:.1f} s ({pw / r['wall_s']:.1f}×) | "
                  f"{'yes' if r['wall_s'] < pw else 'NO'} |")
        d = res["comparison_both"]["disagreements"]
        print(f"| same failing users as Prowler, user by user | {len(d)} disagreements of {users} users | "
              f"{'met' if not d else 'MISSED'} |")
    for r in res["keywatch"]:
        t = res["comparison_keywatch"][r["run"]]
        print(f"| every failing user found, no false alarm ({r['run']}) | {t['failing_found']} of "
              f"{res['comparison']['truth_failing']}; missed {len(t['missed'])}, false {len(t['false_alarms'])} | "
              f"{'met' if not (t['missed'] or t['false_alarms']) else 'MISSED'} |")


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moto-server", default=os.path.join(ROOT, ".venv", "bin", "moto_server"))
    ap.add_argument("--keywatch", default=os.path.join(ROOT, "target", "release", "keywatch"))
    ap.add_argument("--prowler", default=os.path.join(ROOT, ".venv-prowler", "bin", "prowler"))
    ap.add_argument("--users-per-account", type=int, default=500)
    ap.add_argument("--member-account", default="210987654321")
    ap.add_argument("--odd-account", default="333344445555")
    ap.add_argument("--member-role", default="keywatch-member")
    ap.add_argument("--variants", default="keywatch,keywatch-unlimited",
                    help="comma-separated, from keywatch (default IAM rate, 20/s per account), keywatch-unlimited "
                         "(KEYWATCH_IAM_RATE_PER_ACCOUNT=0) and keywatch-no-last-use (default rate, --no-last-use)")
    ap.add_argument("--no-prowler", action="store_true", help="keywatch alone")
    ap.add_argument("--no-odd-names", action="store_true", help="leave out the account of odd user names")
    ap.add_argument("--timeout", type=float, default=1800, help="per run, seconds")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not os.access(args.keywatch, os.X_OK):
        raise SystemExit(f"{args.keywatch} not found: cargo build --release --bin keywatch")
    if not args.no_prowler and not os.access(args.prowler, os.X_OK):
        raise SystemExit(f"{args.prowler} not found: scripts/bench-scan.sh makes .venv-prowler")
    args.tmp = tempfile.mkdtemp(prefix="kwbench-scan-")
    accounts = [OWN, args.member_account]
    args.moto = emulator.Moto(os.path.abspath(args.moto_server))
    print(f"scan vs prowler: {args.users_per_account} users × {len(accounts)} accounts; moto on {args.moto.url} "
          f"(pid {args.moto.proc.pid}); output in {args.tmp}", file=sys.stderr, flush=True)
    res = {"machine": bench.machine(), "accounts": accounts, "users_per_account": args.users_per_account}
    try:
        t = time.monotonic()
        truth = {}
        for acct in accounts:
            users = plain_users(acct, args.users_per_account)
            seed(args.moto, acct, args.member_role, users)
            truth.update({f"{acct}/{u}": s for u, s in users.items()})
        odd_truth, odd_creds = {}, None
        if not args.no_odd_names:
            users = odd_users()
            seed(args.moto, args.odd_account, args.member_role, users)
            odd_truth = {f"{args.odd_account}/{u}": s for u, s in users.items()}
            odd_creds = assume(args.moto, args.odd_account, args.member_role)
        res["setup_s"] = round(time.monotonic() - t, 1)
        res["users"] = len(truth)
        print(f"  seeded {len(truth)} users (+{len(odd_truth)} odd names) in {res['setup_s']} s", file=sys.stderr, flush=True)

        res["keywatch"] = []
        for v in variants:
            rate = 0 if v == "keywatch-unlimited" else None
            env = keywatch_env(args.moto, args, [args.member_account], rate=rate)
            res["keywatch"].append(run_keywatch(v, args, accounts, env, v))
        res["comparison_keywatch"] = {r["run"]: compare(truth, {"keywatch": r["status"]})["tools"]["keywatch"]
                                      for r in res["keywatch"]}
        res["comparison"] = compare(truth, {"keywatch": res["keywatch"][0]["status"]})

        if not args.no_prowler:
            env = keywatch_env(args.moto, args, None)
            res["prowler"] = [
                run_prowler(args, OWN, env, "prowler-own"),
                run_prowler(args, args.member_account, env, "prowler-member", role=args.member_role),
            ]
            both = compare(truth, {"keywatch": res["keywatch"][0]["status"], "prowler": merged(res["prowler"])})
            res["comparison_both"] = both
            res["comparison_prowler"] = both["tools"]["prowler"]

        if odd_truth:
            # The odd account alone: its credentials are the "own" ones.
            env = keywatch_env(args.moto, args, None, creds=odd_creds)
            kw = run_keywatch("keywatch", args, [args.odd_account], env, "keywatch-odd-names")
            res["odd"] = {"truth": odd_truth, "keywatch": kw["status"], "keywatch_run": kw}
            if not args.no_prowler:
                pw = run_prowler(args, args.odd_account, env, "prowler-odd-names")
                res["odd"]["prowler"] = pw["status"]
                res["odd"]["prowler_run"] = pw
    finally:
        args.moto.stop()

    report(res, args)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=2, default=str)
    ok = all(not (t["missed"] or t["false_alarms"]) for t in res["comparison_keywatch"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
