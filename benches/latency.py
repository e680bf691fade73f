#!/usr/bin/env python3
"""Detection latency at a steady low rate, through the whole pipeline on moto:
the emulator's floor, a plain boto3 loop and keywatch, one after the other.

For each worker in turn, on the same moto server (reset in between): users
with one access key each; then, --rate times a second for --seconds, one of
them gets a new key for real (CreateAccessKey, after its oldest key is
deleted once it has two) and the CloudTrail record of that call is put on the
default bus (its eventTime is the moment the key was created, as CloudTrail
would stamp it). The real rule delivers it to the input queue. Every event is
a violation: the user has two active keys, the new one and the one before.

- floor: receives the input queue and deletes each batch, nothing else; its
  latency is event put → message received (PutEvents → rule → queue →
  receive), what no worker can beat.
- baseline: benches/baseline_worker.py, the plain boto3 loop (receive 10,
  ListAccessKeys, PutEvents per finding, DeleteMessage per message).
- keywatch: the release binary (`keywatch run`) with its defaults;
  keywatch-NAME: another binary (--other-keywatch NAME=PATH, e.g. an earlier
  commit's) with the same defaults, for a before/after in one run.

Reported per worker: latency p50/p99/max from the event's put to the finding
read from the findings queue by a concurrent long-polling reader (for the
floor: to the message's receipt), and keywatch's own
`detection_latency_seconds` (detected_at − eventTime); AWS requests per event
by operation (moto's request recorder, leaving out this script's own
set-up, key changes, event puts and reads); the worker process's CPU per
event (utime+stime at the end) and peak RSS (VmHWM, polled).

--keys existing keeps the older set-up: users with two keys made before the
run and events that name one of them (no key is created during the run).

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
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

from kwtools import bench, cloudtrail, emulator  # noqa: E402

WORKERS = ("floor", "baseline", "keywatch")


def ms(v):
    return "–" if v is None else f"{v * 1e3:.1f}"


# ------------------------------------------------------------------ one worker


class Keys:
    """Each user's keys, oldest first; `renew` gives a user a new key the
    way the event will report it."""

    def __init__(self, iam, users):
        self.iam = iam
        self.keys = users

    def renew(self, user):
        if len(self.keys[user]) >= 2:
            self.iam.delete_access_key(UserName=user, AccessKeyId=self.keys[user].pop(0))
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        self.keys[user].append(key["AccessKeyId"])
        return key["AccessKeyId"], key["CreateDate"]


def start_worker(worker, args, pipeline, moto, receipts):
    env = moto.env()
    admin = None
    if worker == "floor":
        cmd = [sys.executable, os.path.abspath(__file__), "--role", "floor", "--queue-url", pipeline.queue_url,
               "--receipts", receipts]
    elif worker == "baseline":
        cmd = [sys.executable, os.path.join(HERE, "baseline_worker.py"), "--queue-url", pipeline.queue_url,
               "--bus", emulator.FINDINGS_BUS, "--idle-secs", "100000"]
    else:
        admin = f"127.0.0.1:{emulator.free_port()}"
        cmd = [args.other_keywatch.get(worker, args.keywatch), "run"]
        env = pipeline.keywatch_env(admin)
    log_path = os.path.join(moto.dir, f"{worker}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if admin is not None and not emulator.wait_http(f"http://{admin}/readyz", 30, proc):
        bench.kill(proc)
        raise SystemExit(f"keywatch did not become ready; see {log_path}")
    if admin is None:
        time.sleep(2)  # the Python workers' imports and first receive
    return proc, log_path


def run_one(worker, args):
    moto = args.moto
    moto.reset()
    pipeline = emulator.Pipeline(moto)
    initial = 2 if args.keys == "existing" else 1
    keys = Keys(pipeline.iam, {u: list(k) for u, k in pipeline.users(args.users, keys=initial).items()})
    names = sorted(keys.keys)
    receipts = os.path.join(moto.dir, f"{worker}-receipts.jsonl")

    moto.recorder("reset-recording")
    moto.recorder("start-recording")
    proc, log_path = start_worker(worker, args, pipeline, moto, receipts)
    hwm = [None]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.25):
            hwm[0] = bench.proc_status_kb(proc.pid) or hwm[0]

    sampler = threading.Thread(target=sample)
    sampler.start()

    # The reader: long-polls the findings queue, notes arrival times.
    arrivals = {}
    stop = threading.Event()
    reader_sqs, _, _ = moto.clients()

    def reader():
        while not stop.is_set():
            out = reader_sqs.receive_message(QueueUrl=pipeline.findings_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            now = time.time()
            for m in out.get("Messages", []):
                detail = json.loads(m["Body"]).get("detail", {})
                arrivals.setdefault(detail.get("trigger", {}).get("event_id"), (now, detail))
                reader_sqs.delete_message(QueueUrl=pipeline.findings_url, ReceiptHandle=m["ReceiptHandle"])

    thread = threading.Thread(target=reader)
    if worker != "floor":
        thread.start()

    n = int(args.rate * args.seconds)
    sent = {}
    start = time.monotonic()
    for i in range(n):
        due = start + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        user = names[i % len(names)]
        event_id = f"latency-{i:06d}-0000-4000-8000-000000000000"
        if args.keys == "existing":
            key_id = keys.keys[user][i // len(names) % 2]
        else:
            key_id, _ = keys.renew(user)
        event_time = datetime.now(timezone.utc)
        record = cloudtrail.create_key(event_id, "admin", user, key_id, event_time=cloudtrail.rfc3339(event_time))
        out = pipeline.events.put_events(Entries=[cloudtrail.put_entry(record)])
        assert out["FailedEntryCount"] == 0, out
        sent[event_id] = event_time.timestamp()

    def received():
        if worker == "floor":
            try:
                with open(receipts) as f:
                    return {r["event_id"]: (r["t"], None) for r in map(json.loads, f)}
            except (OSError, ValueError):
                return {}
        return arrivals

    deadline = time.monotonic() + 30
    while len(received()) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    cpu = bench.proc_cpu_seconds(proc.pid)
    hwm[0] = bench.proc_status_kb(proc.pid) or hwm[0]
    stop.set()
    sampling.set()
    sampler.join()
    if worker != "floor":
        thread.join()
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        bench.kill(proc)
    moto.recorder("stop-recording")
    ops = emulator.count_operations(moto.recording())
    got = received()
    observed = [t - sent[e] for e, (t, _) in got.items() if e in sent]
    own = [d["detection_latency_seconds"] for (_, d) in got.values() if d and "detection_latency_seconds" in d]
    result = {
        "worker": worker,
        "events": n,
        "received": len(got),
        "observed": observed,
        "detection": own,
        "calls": dict(ops),
        "cpu_s": cpu,
        "peak_rss_kb": hwm[0],
        "log": log_path,
    }
    p = bench.percentile
    print(f"  {worker}: {len(got)}/{n}, p50 {ms(p(observed, .5))} ms, p99 {ms(p(observed, .99))} ms, "
          f"calls {dict(ops)}, cpu {cpu} s, VmHWM {hwm[0]} kB", file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------ report


def report(results, args):
    p = bench.percentile
    n = int(args.rate * args.seconds)
    print()
    print("### Detection latency at a steady rate, on moto: floor, plain loop, keywatch")
    print()
    how = ("each event a real CreateAccessKey made the moment before (the user's older key deleted first once it "
           "has two)" if args.keys == "created" else "each event naming one of two keys made before the run")
    print(f"Machine: {bench.machine()}. {n} CreateAccessKey events at {args.rate:g}/s for {args.seconds:g} s over "
          f"{args.users} users, {how}; default bus → rule → input queue → worker → findings bus → rule → findings "
          f"queue (read by a long-polling reader). Each worker on a freshly reset moto.")
    print()
    print("| worker | findings | p50 ms | p99 ms | max ms | own detection_latency p50 / p99 ms | AWS requests/event | "
          "CPU ms/event | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        obs, own = r["observed"], r["detection"]
        calls = sum(r["calls"].values()) / n
        print(f"| {r['worker']} | {r['received']}/{n} | {ms(p(obs, .5))} | {ms(p(obs, .99))} | "
              f"{ms(max(obs) if obs else None)} | {ms(p(own, .5)) + ' / ' + ms(p(own, .99)) if own else '–'} | "
              f"{calls:.2f} | {(r['cpu_s'] or 0) * 1e3 / n:.2f} | "
              f"{(r['peak_rss_kb'] or 0) / 1024:.1f} |")
    print()
    print("AWS requests per event, by operation:")
    print()
    for r in results:
        print(f"- {r['worker']}: " + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(r["calls"].items())))
    print("\n(the floor's latency is event put → message received; the others' event put → finding read.)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["bench", "floor"], default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--queue-url", help=argparse.SUPPRESS)
    ap.add_argument("--receipts", help=argparse.SUPPRESS)
    ap.add_argument("--moto-server", default=os.path.join(HERE, "..", ".venv", "bin", "moto_server"))
    ap.add_argument("--keywatch", default=os.path.join(HERE, "..", "target", "release", "keywatch"))
    ap.add_argument("--other-keywatch", metavar="NAME=PATH", action="append", default=[],
                    help="another keywatch binary (e.g. an earlier commit's), run as the worker keywatch-NAME "
                         "(repeatable)")
    ap.add_argument("--rate", type=float, default=2.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--keys", choices=["created", "existing"], default="created",
                    help="created: each event reports a key made the moment before; existing: events name keys "
                         "made before the run")
    ap.add_argument("--workers", default="floor,baseline,keywatch",
                    help="comma-separated, from " + ", ".join(WORKERS) + ", or keywatch-NAME for each --other-keywatch NAME=PATH")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if args.role == "floor":
        return bench.floor(args.queue_url, receipts=args.receipts)
    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    others = args.other_keywatch = bench.other_keywatch(args.other_keywatch)
    unknown = [w for w in workers if w not in WORKERS and w not in others]
    if unknown:
        raise SystemExit(f"unknown worker(s) {unknown}: choose from {', '.join(WORKERS + tuple(others))}")
    if "keywatch" in workers and not os.access(args.keywatch, os.X_OK):
        raise SystemExit(f"{args.keywatch} not found: cargo build --release --bin keywatch")

    args.moto = emulator.Moto(os.path.abspath(args.moto_server))
    print(f"latency: moto on {args.moto.url} (pid {args.moto.proc.pid}, dir {args.moto.dir}), workers {workers}",
          file=sys.stderr, flush=True)
    try:
        results = [run_one(w, args) for w in workers]
    finally:
        args.moto.stop()
    report(results, args)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": bench.machine(), "rate": args.rate, "seconds": args.seconds, "keys": args.keys,
                       "results": results}, f, indent=2)
    return 0 if all(r["received"] == int(args.rate * args.seconds) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
