#!/usr/bin/env python3
"""keywatch beside a plain boto3 worker and the emulator's floor, on one moto server.

For each worker in turn (floor, baseline, keywatch) on the same moto server:
reset moto; create the pipeline (input queue + DLQ, findings bus → rule →
findings queue); create --users IAM users with two active keys each (so every
event is a violation and yields a finding); enqueue a backlog of --events
CreateAccessKey envelopes across those users directly with SendMessageBatch
(bodies as moto delivers them: no `account`, detail.recipientAccountId
123456789012); start moto's request recorder; run the worker until the input
queue is drained (nothing visible, nothing in flight); stop the recorder.

- floor: the same backlog only received and deleted in batches of 10
  (boto3, --receivers threads): what the emulator allows at best.
- baseline: benches/baseline_worker.py, the straightforward boto3 loop
  (ListAccessKeys per event, PutEvents per finding, DeleteMessage per message).
- keywatch: the release binary (`keywatch run`) with its defaults but
  KEYWATCH_RECEIVERS=--receivers; its IAM rate limiter (20 requests/s per
  account by default) applies, and every event here is in one account.
- keywatch-unlimited: the same with KEYWATCH_IAM_RATE_PER_ACCOUNT=0, the
  worker's own pace on this emulator.

Measured per worker: drain time (worker start → queue drained, polled every
0.25 s), AWS calls per event (moto's recording, leaving out this script's
own monitoring calls), the worker process's CPU per event (utime+stime from
wait4; also without start-up: CPU when the first message left the queue is
subtracted) and peak RSS (VmHWM from /proc/<pid>/status, polled every 0.25 s
and just before the worker is stopped; ru_maxrss is not used because it
counts the forked Python parent's pages before exec), the findings that reached the
findings queue, and moto's own CPU meanwhile (it serves one request at a
time, so moto CPU close to the drain time means moto set the pace).

Run with the project's venv: scripts/bench-side-by-side.sh (builds, then runs
this). Options: --events 1000 --users 250 --receivers 1 --order shuffled
--workers floor,baseline,keywatch --json-out FILE.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

from kwtools import bench, cloudtrail, emulator  # noqa: E402


# ------------------------------------------------------------------ one run


def enqueue(pipeline, users, n, order, seed):
    names = sorted(users)
    plan = [(i, names[i % len(names)], (i // len(names)) % 2) for i in range(n)]
    if order == "shuffled":
        random.Random(seed).shuffle(plan)
    elif order == "grouped":
        plan.sort(key=lambda p: (p[1], p[0]))
    entries = []
    for i, user, k in plan:
        event_id = f"bench-{i:06d}-0000-4000-8000-000000000000"
        record = cloudtrail.create_key(event_id, "admin", user, users[user][k])
        entries.append({"Id": str(len(entries) % 10), "MessageBody": json.dumps(cloudtrail.envelope(record, f"env-{event_id}"))})
    batches = [entries[j:j + 10] for j in range(0, len(entries), 10)]

    def send(batch):
        out = pipeline.sqs.send_message_batch(QueueUrl=pipeline.queue_url, Entries=batch)
        assert not out.get("Failed"), out

    # Set-up, not measured: a few threads (the order within the queue then
    # interleaves the batches, which is fine for a shuffled backlog).
    with ThreadPoolExecutor(4 if order == "shuffled" else 1) as pool:
        list(pool.map(send, batches))


def command_for(worker, args, pipeline, tmp):
    if worker == "floor":
        cmd = [sys.executable, os.path.abspath(__file__), "--role", "floor", "--queue-url", pipeline.queue_url,
               "--receivers", str(args.receivers)]
    elif worker == "baseline":
        cmd = [sys.executable, os.path.join(HERE, "baseline_worker.py"), "--queue-url", pipeline.queue_url,
               "--bus", emulator.FINDINGS_BUS]
    else:
        cmd = [args.other_keywatch.get(worker, args.keywatch), "run"]
        env = pipeline.keywatch_env(
            f"127.0.0.1:{emulator.free_port()}",
            KEYWATCH_RECEIVERS=str(args.receivers),
            KEYWATCH_WAIT_SECS=str(args.keywatch_wait_secs),
        )
        if worker == "keywatch-unlimited":
            env["KEYWATCH_IAM_RATE_PER_ACCOUNT"] = "0"
        return cmd, env
    return cmd, args.moto.env()


def run_one(worker, args):
    moto = args.moto
    moto.reset()
    pipeline = emulator.Pipeline(moto)
    t = time.monotonic()
    users = pipeline.users(args.users, keys=2)
    enqueue(pipeline, users, args.events, args.order, args.seed)
    setup = time.monotonic() - t
    visible, in_flight = pipeline.depth()
    assert (visible, in_flight) == (args.events, 0), (visible, in_flight)

    cmd, env = command_for(worker, args, pipeline, moto.dir)
    log_path = os.path.join(moto.dir, f"{worker}.log")
    moto.recorder("reset-recording")
    moto.recorder("start-recording")
    load = bench.OtherLoad(moto.proc.pid)
    with open(log_path, "wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    profiler = None
    if args.perf and worker.startswith("keywatch"):
        # Sampled at 999 Hz from outside, so the worker's own CPU and RSS
        # figures stay its own (perf's cost shows in "other processes").
        profile = os.path.join(os.path.abspath(args.perf), f"{worker}.perf.data")
        os.makedirs(os.path.dirname(profile), exist_ok=True)
        profiler = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", profile, "-p", str(proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    cpu_at_first = None
    cpu = None
    hwm_kb = None
    drained_at = None
    exit_early = None
    rusage = None
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        cpu = bench.proc_cpu_seconds(proc.pid)
        hwm_kb = bench.proc_status_kb(proc.pid) or hwm_kb
        visible, in_flight = pipeline.depth()
        if cpu_at_first is None and visible < args.events:
            cpu_at_first = cpu
        if visible == 0 and in_flight == 0:
            drained_at = time.monotonic()
            break
        code, ru = bench.wait4(proc, 0)
        if code is not None:
            exit_early, rusage = code, ru
            break
        time.sleep(0.25)
    other_load = load.cores(cpu)
    moto_cpu = load.moto_seconds()
    moto.recorder("stop-recording")
    drain = (drained_at - started) if drained_at else None

    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            bench.kill(profiler)
    if rusage is None:
        hwm_kb = bench.proc_status_kb(proc.pid) or hwm_kb
        if worker.startswith("keywatch"):
            os.kill(proc.pid, signal.SIGTERM)
        code, rusage = bench.wait4(proc, 45)
        if code is None:
            bench.kill(proc)
            code = "killed"
    else:
        code = exit_early
    ops = emulator.count_operations(moto.recording())
    findings_visible, findings_in_flight = pipeline.depth(pipeline.findings_url)
    latencies = finding_latencies(pipeline) if worker != "floor" else []
    cpu_total = (rusage.ru_utime + rusage.ru_stime) if rusage else None
    result = {
        "worker": worker,
        "events": args.events,
        "setup_s": round(setup, 1),
        "drained": drained_at is not None,
        "drain_s": drain,
        "exit": code,
        "cpu_s": cpu_total,
        "cpu_startup_s": cpu_at_first,
        # VmHWM of the worker's own image, polled: ru_maxrss would count the
        # forked Python parent's pages before exec.
        "peak_rss_kb": hwm_kb,
        "calls": dict(ops),
        "calls_total": sum(ops.values()),
        "findings": findings_visible + findings_in_flight,
        # Each finding's detection_latency_seconds (detected_at − eventTime):
        # on a backlog, mostly the time the event waited in the queue.
        "latencies": latencies,
        "other_load": round(other_load, 2),
        "moto_cpu_s": round(moto_cpu, 1),
        "log": log_path,
    }
    print(f"  {worker}: {json.dumps({k: v for k, v in result.items() if k != 'calls'})}", file=sys.stderr, flush=True)
    print(f"    calls: {dict(ops)}", file=sys.stderr, flush=True)
    return result


def finding_latencies(pipeline):
    """detection_latency_seconds of every finding on the findings queue
    (read with the monitoring client, after the recording stopped)."""
    out = []
    empty = 0
    while empty < 2:
        got = pipeline.sqs.receive_message(QueueUrl=pipeline.findings_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                           VisibilityTimeout=300)
        messages = got.get("Messages", [])
        empty = 0 if messages else empty + 1
        for m in messages:
            detail = json.loads(m["Body"]).get("detail", {})
            if "detection_latency_seconds" in detail:
                out.append(detail["detection_latency_seconds"])
    return out


# ------------------------------------------------------------------ report


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def latency_cell(values):
    if not values:
        return "–"
    p = bench.percentile
    return f"{p(values, .5):.1f} / {p(values, .99):.1f}"


def report(results, args):
    by = {r["worker"]: r for r in results}
    n = args.events
    print()
    print("### keywatch beside a plain boto3 worker, on one moto server")
    print()
    print(f"Machine: {bench.machine()}. Backlog: {n} CreateAccessKey events over {args.users} users with 2 active keys each "
          f"(every event a violation), order {args.order}; receivers/threads {args.receivers} (baseline: 1); "
          f"moto's request recorder on (it slows moto for every worker alike).")
    print()
    print("| worker | drained | drain s | events/s | AWS calls/event | CPU ms/event | CPU ms/event w/o start-up | peak RSS MB | findings | latency p50 / p99 s | moto CPU s | other processes' CPU (cores) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        drain = r["drain_s"]
        cpu = r["cpu_s"]
        steady = (cpu - (r["cpu_startup_s"] or 0)) if cpu is not None else None
        print(
            f"| {r['worker']} | {'yes' if r['drained'] else 'NO'} | {fmt(drain, '.1f')} | "
            f"{fmt(n / drain if drain else None, '.1f')} | {r['calls_total'] / n:.2f} | "
            f"{fmt(cpu * 1e3 / n if cpu is not None else None, '.3f')} | {fmt(steady * 1e3 / n if steady is not None else None, '.3f')} | "
            f"{fmt(r['peak_rss_kb'] / 1024 if r['peak_rss_kb'] else None, '.1f')} | {r['findings']} | "
            f"{latency_cell(r.get('latencies'))} | {r['moto_cpu_s']:.1f} | {r['other_load']:.2f} |"
        )
    print()
    print("AWS requests per event, by operation (moto's recording):")
    print()
    for r in results:
        print(f"- {r['worker']}: " + ", ".join(f"{k} {v / n:.3f} ({v})" for k, v in sorted(r["calls"].items())))
    print()
    print("Latency: each finding's detection_latency_seconds (detected_at − eventTime); on a backlog, mostly the "
          "time the event waited in the queue. The floor publishes no finding.")
    base, floor = by.get("baseline"), by.get("floor")
    variants = [r for r in results if r["worker"].startswith("keywatch")]
    if not variants:
        return
    print()
    print("| goal | " + " | ".join(r["worker"] for r in variants) + " |")
    print("|---|" + "---|" * len(variants))

    def verdict(measured, ok):
        return f"{measured} ({'met' if ok else 'MISSED' if ok is not None else 'n/a'})"

    cells = {"cpu": [], "calls": [], "rss": [], "drain": []}
    for kw in variants:
        if base and kw["cpu_s"] and base["cpu_s"]:
            ratio = base["cpu_s"] / kw["cpu_s"]
            cells["cpu"].append(verdict(f"{ratio:.1f}×", ratio >= 20))
        else:
            cells["cpu"].append(verdict("not measured", None))
        calls = kw["calls_total"] / n
        cells["calls"].append(verdict(f"{calls:.3f}", calls <= 0.7))
        rss = kw["peak_rss_kb"] / 1024 if kw["peak_rss_kb"] else None
        cells["rss"].append(verdict(fmt(rss, ".1f") + " MB", rss is not None and rss < 20))
        if floor and floor["drain_s"] and kw["drain_s"]:
            ratio = kw["drain_s"] / floor["drain_s"]
            cells["drain"].append(verdict(f"{ratio:.2f}× ({kw['drain_s']:.1f} s vs {floor['drain_s']:.1f} s)", ratio <= 1.1))
        else:
            cells["drain"].append(verdict("not measured", None))
    print("| ≥ 20× less CPU per event than baseline | " + " | ".join(cells["cpu"]) + " |")
    print("| ≤ 0.7 AWS calls per event, enrichment on | " + " | ".join(cells["calls"]) + " |")
    print("| RSS < 20 MB | " + " | ".join(cells["rss"]) + " |")
    print("| drain time within 1.1× the floor | " + " | ".join(cells["drain"]) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["bench", "floor"], default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--queue-url", help=argparse.SUPPRESS)
    ap.add_argument("--idle-secs", type=float, default=3.0, help=argparse.SUPPRESS)
    ap.add_argument("--moto-server", default=os.path.join(HERE, "..", ".venv", "bin", "moto_server"))
    ap.add_argument("--keywatch", default=os.path.join(HERE, "..", "target", "release", "keywatch"))
    ap.add_argument("--other-keywatch", metavar="NAME=PATH", action="append", default=[],
                    help="another keywatch binary (e.g. an earlier commit's), run as the worker keywatch-NAME with "
                         "keywatch's defaults: a before/after comparison on one moto server (repeatable)")
    ap.add_argument("--perf", metavar="DIR",
                    help="profile each keywatch worker with `perf record -F 999 -g -p PID` into DIR/<worker>.perf.data "
                         "(read it with `perf report -i FILE --no-children --sort dso,symbol`)")
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--users", type=int, default=250)
    ap.add_argument("--receivers", type=int, default=1, help="keywatch's KEYWATCH_RECEIVERS and the floor's threads")
    ap.add_argument("--keywatch-wait-secs", type=int, default=20, help="KEYWATCH_WAIT_SECS (the binary's default: 20)")
    ap.add_argument("--order", choices=["shuffled", "round-robin", "grouped"], default="shuffled",
                    help="backlog order: shuffled (seeded), round-robin over users, or grouped by user")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", default="floor,baseline,keywatch",
                    help="comma-separated, from floor, baseline, keywatch (the binary with its defaults: IAM "
                         "limited to 20 requests/s per account) and keywatch-unlimited (the same with "
                         "KEYWATCH_IAM_RATE_PER_ACCOUNT=0); keywatch-NAME with --other-keywatch NAME=PATH")
    ap.add_argument("--timeout", type=float, default=240, help="per worker, seconds")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if args.role == "floor":
        return bench.floor(args.queue_url, args.receivers, args.idle_secs)

    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    if any(w.startswith("keywatch") for w in workers) and not os.access(args.keywatch, os.X_OK):
        raise SystemExit(f"{args.keywatch} not found: cargo build --release --bin keywatch")
    others = args.other_keywatch = bench.other_keywatch(args.other_keywatch)
    unknown = [w for w in workers if w.startswith("keywatch-") and w != "keywatch-unlimited" and w not in others]
    if unknown:
        raise SystemExit(f"worker(s) {unknown} need --other-keywatch NAME=PATH")
    print(f"side-by-side: {args.events} events, {args.users} users, workers {workers}", file=sys.stderr, flush=True)
    args.moto = emulator.Moto(os.path.abspath(args.moto_server))
    print(f"  moto on {args.moto.url} (pid {args.moto.proc.pid}, dir {args.moto.dir})", file=sys.stderr, flush=True)
    try:
        results = [run_one(w, args) for w in workers]
    finally:
        args.moto.stop()
    report(results, args)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": bench.machine(), "events": args.events, "users": args.users, "results": results}, f, indent=2)
    return 0 if all(r["drained"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
