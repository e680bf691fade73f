#!/usr/bin/env python3
"""Detection latency of key events while a large account scan runs on the same
worker, against the same latency with no scan, on one moto server.

Set-up: --users IAM users with one access key each (the account the scan
reads), --probes probe users with one key each. keywatch (the release binary,
defaults) runs on the input queue with a ledger table.

1. Quiet: --probes times, a probe user gets a second key for real
   (CreateAccessKey) and its CloudTrail record is put on the default bus; the
   latency is the put → the FAILED read from the findings queue, and
   keywatch's own detection_latency_seconds (eventTime → decision).
2. During a scan: a scan request for the account (`{"keywatch":
   "scan-request", "account_id": ...}`) is put on the input queue; once the
   scan is under way, the same probes, spaced so that they all land while it
   runs. The scan reads --users users at the account's IAM rate (20/s by
   default), so it lasts about users / 20 seconds.

Reported: p50 / max of both latencies in each phase, their ratio, the
scan's duration, whether every probe landed while the scan ran, and how
many scan summaries the one request published (the target: one).

Run with the project's venv: scripts/bench-moto.sh benches/latency_during_scan.py
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

from kwtools import bench, cloudtrail, emulator  # noqa: E402

SUMMARY = "IAM Access Key Scan Summary"
FINDING = "IAM Access Key Finding"


class Reader:
    """Reads the findings queue in the background: findings by user, and the
    scan summaries, each with the time it was read."""

    def __init__(self, sqs, url):
        self.sqs, self.url = sqs, url
        self.findings, self.summaries = {}, []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            out = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            now = time.monotonic()
            for m in out.get("Messages", []):
                env = json.loads(m["Body"])
                with self.lock:
                    if env.get("detail-type") == SUMMARY:
                        self.summaries.append((now, env["detail"]))
                    elif env.get("detail-type") == FINDING:
                        self.findings.setdefault(env["detail"]["user_name"], []).append((now, env["detail"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def wait_finding(self, user, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = self.findings.get(user)
                if got:
                    return got[0]
            time.sleep(0.005)
        return None


def probe(p, reader, user):
    """A second key for `user`, its record on the bus: (put → read seconds,
    detection_latency_seconds)."""
    key = p.iam.create_access_key(UserName=user)["AccessKey"]
    created = key["CreateDate"].strftime("%b %d, %Y %I:%M:%S %p")
    detail = cloudtrail.create_key(None, "admin", user, key["AccessKeyId"], create_date=created)
    put_at = time.monotonic()
    p.events.put_events(Entries=[cloudtrail.put_entry(detail)])
    got = reader.wait_finding(user)
    if got is None:
        raise SystemExit(f"no finding for {user}")
    return got[0] - put_at, got[1]["detection_latency_seconds"]


def stats(values):
    return bench.percentile(values, 0.5), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keywatch", required=True)
    ap.add_argument("--moto-server", required=True)
    ap.add_argument("--users", type=int, default=1000, help="users the scanned account holds (default 1000)")
    ap.add_argument("--probes", type=int, default=10, help="key events in each phase (default 10)")
    ap.add_argument("--without-ledger", action="store_true", help="run the worker without a ledger table (the ledger's cost on latency)")
    ap.add_argument("--json-out", help="write the figures as JSON here too")
    args = ap.parse_args()

    moto = emulator.Moto(args.moto_server)
    worker = None
    try:
        p = emulator.Pipeline(moto, visibility_secs=30)
        print(f"seeding {args.users} users and {2 * args.probes} probe users ...", file=sys.stderr, flush=True)
        p.users(args.users, keys=1)
        quiet_users = list(p.users(args.probes, keys=1, prefix="probe-quiet"))
        busy_users = list(p.users(args.probes, keys=1, prefix="probe-busy"))
        ledger = p.ledger_table()
        # Scan summaries to the findings queue too (the pipeline routes findings only).
        p.events.put_rule(Name="keywatch-summaries", EventBusName=emulator.FINDINGS_BUS,
                          EventPattern=json.dumps({"source": ["keywatch"], "detail-type": [SUMMARY]}))
        p.events.put_targets(Rule="keywatch-summaries", EventBusName=emulator.FINDINGS_BUS,
                             Targets=[{"Id": "summaries", "Arn": p.arn(p.findings_url)}])
        admin = f"127.0.0.1:{emulator.free_port()}"
        log = open(f"{moto.dir}/keywatch.log", "w")
        env = p.keywatch_env(admin, KEYWATCH_LOG_FORMAT="json")
        if not args.without_ledger:
            env["KEYWATCH_LEDGER_TABLE"] = ledger
        worker = subprocess.Popen([args.keywatch, "run"], env=env, stdout=log, stderr=log)
        if not emulator.wait_http(f"http://{admin}/readyz", 60, worker):
            raise SystemExit("keywatch did not become ready")
        reader = Reader(p.sqs, p.findings_url)

        quiet = [probe(p, reader, u) for u in quiet_users]

        account = cloudtrail.ACCOUNT
        scan_sent = time.monotonic()
        p.sqs.send_message(QueueUrl=p.queue_url, MessageBody=json.dumps({"keywatch": "scan-request", "account_id": account}))
        # Under way once a worker took the request (the scan publishes no
        # finding here: every user has one key).
        time.sleep(2)
        expected = args.users / 20.0
        spacing = max(0.2, (expected * 0.6) / max(1, args.probes))
        busy = []
        for u in busy_users:
            busy.append(probe(p, reader, u))
            time.sleep(spacing)
        last_probe = time.monotonic()
        deadline = time.monotonic() + expected * 4 + 60
        while not reader.summaries and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # a second summary, if there were one, has time to come
        with reader.lock:
            summaries = list(reader.summaries)
        reader.stop.set()
        if not summaries:
            raise SystemExit("no scan summary arrived")
        scan_done = summaries[0][0]
        summary = summaries[0][1]["scan_summary"] if "scan_summary" in summaries[0][1] else summaries[0][1]

        q_put, q_own = zip(*quiet)
        b_put, b_own = zip(*busy)
        rows = [("no scan", q_put, q_own), (f"during a {args.users}-user scan", b_put, b_own)]
        print()
        print("| phase | events | put → finding read, p50 / max (ms) | detection_latency_seconds, p50 / max (ms) |")
        print("|---|---|---|---|")
        for name, put, own in rows:
            pp, pm = stats(put)
            op, om = stats(own)
            print(f"| {name} | {len(put)} | {pp * 1e3:.0f} / {pm * 1e3:.0f} | {op * 1e3:.0f} / {om * 1e3:.0f} |")
        ratio = stats(b_put)[0] / stats(q_put)[0]
        print()
        print(f"p50 during the scan / p50 without: {ratio:.2f} (target ≤ 2)")
        print(f"scan: {summary.get('users_checked')} users checked in {summary.get('duration_seconds', 0):.1f} s; "
              f"request to summary {scan_done - scan_sent:.1f} s; every probe while it ran: {last_probe < scan_done}")
        print(f"summaries published for the one request: {len(summaries)} (target 1)")
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"quiet": quiet, "busy": busy, "ratio_p50": ratio, "summaries": len(summaries),
                           "scan_seconds": summary.get("duration_seconds"), "probes_during_scan": last_probe < scan_done}, f)
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=40)
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
