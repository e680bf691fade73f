"""The keywatch demo on a local AWS emulator (moto server). Run scripts/demo.sh.

Starts moto and keywatch on free 127.0.0.1 ports, wires the production
pipeline on the emulator, makes a user's second key active, delivers the
CloudTrail event that AWS would, and prints the findings as they arrive.
"""

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

from kwtools import cloudtrail, emulator


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def put_cloudtrail(events, detail):
    out = events.put_events(Entries=[cloudtrail.put_entry(detail)])
    if out["FailedEntryCount"]:
        raise SystemExit(f"PutEvents rejected the event: {out}")


def next_finding(sqs, url, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        for m in out.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            return json.loads(m["Body"])
    return None


def show(envelope, received_at):
    d = envelope["detail"]
    print(json.dumps(d, indent=2), flush=True)
    event_time = datetime.fromisoformat(d["trigger"]["event_time"].replace("Z", "+00:00"))
    print(
        f"\n{d['status']} {d['control_id']} for {d['user_name']} in {d['account_id']}: "
        f"{d['active_key_count']} active key(s); detection latency "
        f"{d['detection_latency_seconds'] * 1000:.0f} ms (CloudTrail event → finding), "
        f"{(received_at - event_time).total_seconds() * 1000:.0f} ms to reach the findings queue\n",
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keywatch", required=True)
    ap.add_argument("--moto-server", required=True)
    args = ap.parse_args()

    moto = emulator.Moto(args.moto_server)
    worker = None
    try:
        say(f"Started the AWS emulator on {moto.url} (pid {moto.proc.pid}, log {moto.log_path})")
        say("Creating the input queue with its DLQ, the CloudTrail rule, and the findings bus")
        pipeline = emulator.Pipeline(moto, visibility_secs=30)
        sqs, iam, events = pipeline.sqs, pipeline.iam, pipeline.events

        ledger = pipeline.ledger_table()
        say(f"Creating the ledger of findings (DynamoDB table {ledger})")
        admin = f"127.0.0.1:{emulator.free_port()}"
        log_path = f"{moto.dir}/keywatch.log"
        say(f"Starting keywatch (admin port {admin}, log {log_path})")
        env = pipeline.keywatch_env(admin, KEYWATCH_QUEUE_METRICS_INTERVAL_SECS="5", KEYWATCH_LEDGER_TABLE=ledger)
        with open(log_path, "w") as log:
            worker = subprocess.Popen([args.keywatch, "run"], env=env, stdout=log, stderr=log)

        def fail(why):
            print(open(log_path).read(), file=sys.stderr)
            raise SystemExit(why)

        if not emulator.wait_http(f"http://{admin}/readyz", 30, worker):
            fail("keywatch did not become ready")

        say("alice has one access key; an administrator creates a second one")
        iam.create_user(UserName="alice")
        iam.create_access_key(UserName="alice")
        key = iam.create_access_key(UserName="alice")["AccessKey"]
        second = key["AccessKeyId"]
        created = key["CreateDate"].strftime("%b %d, %Y %I:%M:%S %p")
        put_cloudtrail(events, cloudtrail.create_key(None, "admin", "alice", second, create_date=created))
        envelope = next_finding(sqs, pipeline.findings_url, 30)
        if envelope is None:
            fail("no finding arrived")
        say("Finding on the findings bus:")
        show(envelope, datetime.now(timezone.utc))

        say("Who fails now (keywatch findings, from the ledger):")
        findings = [args.keywatch, "findings", "--ledger-table", ledger]
        subprocess.run(findings, env=env, check=False)

        say(f"The administrator deactivates {second}")
        iam.update_access_key(UserName="alice", AccessKeyId=second, Status="Inactive")
        put_cloudtrail(events, cloudtrail.update_key(None, "admin", "alice", second, "Inactive"))
        envelope = next_finding(sqs, pipeline.findings_url, 30)
        if envelope is None:
            fail("no resolution finding arrived")
        say("Resolution on the findings bus (same finding_id):")
        show(envelope, datetime.now(timezone.utc))

        # The finding reaches the findings queue before keywatch has deleted
        # its message (it deletes once PutEvents has accepted it): wait for
        # both deletes, briefly, so the count below is the settled one.
        deadline = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
                lines = [l for l in r.read().decode().splitlines() if l.startswith(("keywatch_findings_total", "keywatch_messages_total"))]
            if 'keywatch_messages_total{result="deleted"} 2' in lines or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        say("Who fails now, once fixed (--fail-on-open exits 0: nobody):")
        code = subprocess.run(findings + ["--fail-on-open"], env=env, check=False).returncode
        if code != 0:
            fail(f"keywatch findings --fail-on-open exited {code} after the fix")

        say("keywatch's own count (from /metrics):")
        print("\n".join(lines), flush=True)

        say("Stopping keywatch with SIGTERM")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=40)
        say(f"keywatch exited with {code}")
        return 0 if code == 0 else 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
