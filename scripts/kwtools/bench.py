"""What the moto benchmarks (benches/side_by_side.py, latency.py,
scan_vs_prowler.py) measure with beyond the emulator: a process's CPU and
peak RSS from /proc, the other processes' load meanwhile, the machine,
percentiles, the --other-keywatch option, and the floor worker (the input
queue received and deleted, nothing else: what no worker can beat).
"""

import json
import os
import signal
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid):
    """utime + stime of a live process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds():
    """Busy CPU time of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


class OtherLoad:
    """CPU that processes other than ours (this script, moto, the worker)
    used during a run, in cores: a run above ~0.2 competed for the CPUs."""

    def __init__(self, moto_pid):
        self.moto_pid = moto_pid
        self.t = time.monotonic()
        self.busy = machine_busy_seconds()
        self.moto = proc_cpu_seconds(moto_pid) or 0.0
        t = os.times()
        self.me = t.user + t.system

    def moto_seconds(self):
        """CPU moto used since the start: it serves one request at a time
        (Python's GIL), so close to the wall time means moto set the pace."""
        return (proc_cpu_seconds(self.moto_pid) or 0.0) - self.moto

    def cores(self, worker_cpu):
        wall = time.monotonic() - self.t
        t = os.times()
        own = (t.user + t.system - self.me) + ((proc_cpu_seconds(self.moto_pid) or 0.0) - self.moto) + (worker_cpu or 0.0)
        return max(0.0, (machine_busy_seconds() - self.busy - own) / wall) if wall > 0 else 0.0


def proc_status_kb(pid, field="VmHWM"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait4(proc, timeout):
    """Waits for a Popen child with os.wait4; (exit status, rusage) or
    (None, None) if it is still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, rusage
        if time.monotonic() >= deadline:
            return None, None
        time.sleep(0.05)


def kill(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    i = max(1, min(len(s), int(-(-q * len(s) // 1)))) - 1
    return s[i]


def other_keywatch(specs):
    """--other-keywatch NAME=PATH values → {"keywatch-NAME": PATH}: other
    binaries (an earlier commit's) a bench runs beside `keywatch`."""
    others = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not os.access(path, os.X_OK):
            raise SystemExit(f"--other-keywatch {spec!r}: give NAME=PATH, PATH an executable keywatch")
        others[f"keywatch-{name}"] = path
    return others


def floor(queue_url, receivers=1, idle_secs=None, receipts=None):
    """The floor worker: receives the input queue 10 messages at a time (long
    poll) and deletes each batch, nothing else, on `receivers` threads; until
    SIGTERM, or once the queue has stayed empty for `idle_secs`. With
    `receipts` (a path), each message's eventID and the time it was received
    as JSON lines. Credentials, region and endpoint come from the standard AWS
    environment variables."""
    import boto3

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    out = open(receipts, "w") if receipts else None

    def loop():
        sqs = boto3.client("sqs")
        idle_since = None
        while not stop.is_set():
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            now = time.time()
            messages = got.get("Messages", [])
            if not messages:
                idle_since = idle_since or time.monotonic()
                if idle_secs is not None and time.monotonic() - idle_since >= idle_secs:
                    return
                continue
            idle_since = None
            if out:
                with lock:
                    for m in messages:
                        event_id = json.loads(m["Body"]).get("detail", {}).get("eventID")
                        out.write(json.dumps({"event_id": event_id, "t": now}) + "\n")
                    out.flush()
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    threads = [threading.Thread(target=loop) for _ in range(receivers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if out:
        out.close()
    return 0
