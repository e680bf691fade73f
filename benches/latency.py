#!/usr/bin/env python3
"""Detection latency at a steady low rate, through the whole pipeline on moto.

A CloudTrail CreateAccessKey event is put on the default bus --rate times a
second for --seconds (its eventTime is the moment it is put), the real rule
delivers it to the input queue, the keywatch release binary re-checks the
user (two active keys: every event a violation) and publishes the finding to
the findings bus, whose rule delivers it to the findings queue.

Reported: p50/p99/max of the findings' own `detection_latency_seconds`
(keywatch's detected_at − the event's eventTime), and of the time until the
finding was read from the findings queue by a concurrent long-polling reader
(an upper bound that includes the findings-bus delivery and the reader).

The floor is what no worker can avoid on the same moto: ListAccessKeys then
PutEvents (to the findings bus, with its rule and target) back to back from
Python (boto3), --floor-samples times; it includes boto3's own client cost, so
it overstates the floor a Rust client would see.

Run with the project's venv: scripts/bench-latency.sh (builds, then runs this).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import motobench as mb  # noqa: E402


def wait_ready(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def ms(v):
    return "–" if v is None else f"{v * 1e3:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moto-server", default=os.path.join(HERE, "..", ".venv", "bin", "moto_server"))
    ap.add_argument("--keywatch", default=os.path.join(HERE, "..", "target", "release", "keywatch"))
    ap.add_argument("--rate", type=float, default=2.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--floor-samples", type=int, default=100)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if not os.access(args.keywatch, os.X_OK):
        raise SystemExit(f"{args.keywatch} not found: cargo build --release --bin keywatch")

    moto = mb.Moto(os.path.abspath(args.moto_server))
    print(f"latency: moto on {moto.url} (pid {moto.proc.pid}, dir {moto.dir})", file=sys.stderr, flush=True)
    worker = None
    try:
        moto.reset()
        pipeline = mb.Pipeline(moto)
        users = pipeline.users(args.users, keys=2)
        names = sorted(users)

        # The floor first, on the same server, before keywatch runs.
        floor = []
        sample_detail = json.dumps({"status": "FAILED", "finding_id": "floor"})
        for i in range(args.floor_samples):
            user = names[i % len(names)]
            t = time.perf_counter()
            pipeline.iam.list_access_keys(UserName=user)
            pipeline.events.put_events(
                Entries=[{"Source": "keywatch-floor", "DetailType": "IAM Access Key Finding", "Detail": sample_detail,
                          "EventBusName": mb.FINDINGS_BUS}]
            )
            floor.append(time.perf_counter() - t)

        admin_port = mb.free_port()
        env = moto.env()
        env.update(
            KEYWATCH_QUEUE_URL=pipeline.queue_url,
            KEYWATCH_FINDINGS_BUS=mb.FINDINGS_BUS,
            KEYWATCH_METRICS_ADDR=f"127.0.0.1:{admin_port}",
        )
        log_path = os.path.join(moto.dir, "keywatch.log")
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([args.keywatch, "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        if not wait_ready(admin_port):
            raise SystemExit(f"keywatch did not become ready; see {log_path}")

        # The reader: long-polls the findings queue, notes arrival times.
        arrivals = {}
        stop = threading.Event()
        reader_sqs, _, _ = moto.clients()

        def reader():
            while not stop.is_set():
                out = reader_sqs.receive_message(QueueUrl=pipeline.findings_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                now = datetime.now(timezone.utc)
                for m in out.get("Messages", []):
                    detail = json.loads(m["Body"]).get("detail", {})
                    arrivals[detail.get("trigger", {}).get("event_id")] = (now, detail)
                    reader_sqs.delete_message(QueueUrl=pipeline.findings_url, ReceiptHandle=m["ReceiptHandle"])

        thread = threading.Thread(target=reader)
        thread.start()

        n = int(args.rate * args.seconds)
        sent = {}
        puts = []
        start = time.monotonic()
        for i in range(n):
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            user = names[i % len(names)]
            event_id = f"latency-{i:06d}-0000-4000-8000-000000000000"
            event_time = datetime.now(timezone.utc)
            record = mb.create_key_record(event_id, "admin", user, users[user][i // len(names) % 2], mb.rfc3339(event_time))
            t = time.perf_counter()
            out = pipeline.events.put_events(
                Entries=[{"Source": "aws.iam", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(record)}]
            )
            puts.append(time.perf_counter() - t)
            assert out["FailedEntryCount"] == 0, out
            sent[event_id] = event_time
        deadline = time.monotonic() + 30
        while len(arrivals) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        thread.join()
    finally:
        if worker is not None and worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                mb.kill(worker)
        moto.stop()

    detection = [d["detection_latency_seconds"] for (_, d) in arrivals.values()]
    observed = [(t - sent[e]).total_seconds() for e, (t, _) in arrivals.items() if e in sent]
    p = mb.percentile
    print()
    print("### Detection latency at a steady rate, on moto")
    print()
    print(f"Machine: {mb.machine()}. {n} CreateAccessKey events at {args.rate:g}/s for {args.seconds:g} s over "
          f"{args.users} users (2 active keys each) through default bus → rule → input queue → keywatch (release, "
          f"default settings: 20 s long poll, 1 receiver) → findings bus → rule → findings queue. "
          f"Findings received: {len(arrivals)} of {n}.")
    print()
    print("| measure | samples | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    print(f"| finding's detection_latency_seconds | {len(detection)} | {ms(p(detection, .5))} | {ms(p(detection, .99))} | "
          f"{ms(max(detection) if detection else None)} |")
    print(f"| event put → finding read from the findings queue | {len(observed)} | {ms(p(observed, .5))} | "
          f"{ms(p(observed, .99))} | {ms(max(observed) if observed else None)} |")
    print(f"| floor: ListAccessKeys + PutEvents back to back (boto3) | {len(floor)} | {ms(p(floor, .5))} | "
          f"{ms(p(floor, .99))} | {ms(max(floor))} |")
    print(f"| (inside the detection latency) the event's own PutEvents to the default bus, rule → input queue (boto3) | "
          f"{len(puts)} | {ms(p(puts, .5))} | {ms(p(puts, .99))} | {ms(max(puts) if puts else None)} |")
    if detection:
        over = p(detection, .5) - p(floor, .5)
        print()
        print(f"keywatch's p50 above the floor's p50: {over * 1e3:.1f} ms (the event's own delivery, the long-poll "
              f"wake-up, GetAccessKeyLastUsed on a key's first event, and keywatch itself).")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": mb.machine(), "detection": detection, "observed": observed, "floor": floor, "puts": puts}, f)
    return 0 if len(arrivals) == n else 1


if __name__ == "__main__":
    sys.exit(main())
