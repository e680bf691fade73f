"""Shared helpers of the moto-based benchmarks (side_by_side.py, latency.py).

A moto server on a free 127.0.0.1 port, started in a temporary directory
(its request recorder writes its file into its working directory) and killed
by pid; the production wiring on it; CloudTrail-shaped records; process
accounting from /proc.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import boto3
from botocore.config import Config

ACCOUNT = "123456789012"
FINDINGS_BUS = "keywatch-findings"
MONITOR_AGENT = "kwbench-monitor"
KEY_EVENT_PATTERN = json.dumps(
    {
        "source": ["aws.iam"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": ["iam.amazonaws.com"], "eventName": ["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"]},
    }
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Requests from 127.0.0.1 must not go through a proxy.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", data=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


class Moto:
    """moto_server on a free loopback port, in a temporary directory."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="kwbench-moto-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.dir, "moto.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http(f"{self.url}/moto-api/", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"moto_server exited with {self.proc.returncode}; see {self.dir}/moto.log")
                time.sleep(0.1)
        self.stop()
        raise SystemExit("moto_server did not start within 30 s")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def reset(self):
        http(f"{self.url}/moto-api/reset", method="POST", data=b"")

    def recorder(self, action):
        http(f"{self.url}/moto-api/recorder/{action}", method="POST", data=b"")

    def recording(self):
        return http(f"{self.url}/moto-api/recorder/download-recording").decode()

    def env(self):
        """Environment of a worker process pointed at this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=self.url,
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def clients(self, agent=MONITOR_AGENT):
        """boto3 clients for set-up and monitoring; their requests carry
        `agent` in User-Agent so that the recording can leave them out."""
        cfg = Config(user_agent_extra=agent, retries={"max_attempts": 3, "mode": "standard"})
        kw = dict(
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=cfg,
        )
        return boto3.client("sqs", **kw), boto3.client("iam", **kw), boto3.client("events", **kw)


class Pipeline:
    """Input queue (+DLQ) fed by a default-bus rule; findings bus → findings queue."""

    def __init__(self, moto, visibility_secs=60):
        self.sqs, self.iam, self.events = moto.clients()
        dlq = self.sqs.create_queue(QueueName="keywatch-dlq")["QueueUrl"]
        redrive = json.dumps({"deadLetterTargetArn": self.arn(dlq), "maxReceiveCount": "5"})
        self.queue_url = self.sqs.create_queue(
            QueueName="keywatch-input",
            Attributes={"VisibilityTimeout": str(visibility_secs), "RedrivePolicy": redrive},
        )["QueueUrl"]
        self.events.put_rule(Name="keywatch-iam-key-events", EventPattern=KEY_EVENT_PATTERN)
        self.events.put_targets(Rule="keywatch-iam-key-events", Targets=[{"Id": "input", "Arn": self.arn(self.queue_url)}])
        self.findings_url = self.sqs.create_queue(QueueName="keywatch-findings-out")["QueueUrl"]
        self.events.create_event_bus(Name=FINDINGS_BUS)
        self.events.put_rule(
            Name="keywatch-findings-to-siem",
            EventBusName=FINDINGS_BUS,
            EventPattern=json.dumps({"source": ["keywatch"], "detail-type": ["IAM Access Key Finding"]}),
        )
        self.events.put_targets(
            Rule="keywatch-findings-to-siem",
            EventBusName=FINDINGS_BUS,
            Targets=[{"Id": "siem", "Arn": self.arn(self.findings_url)}],
        )

    def arn(self, url):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def users(self, n, keys=2, prefix="bench-user"):
        """Creates n users with `keys` keys each; {user: [key ids]}."""
        def one(u):
            name = f"{prefix}-{u:04d}"
            self.iam.create_user(UserName=name)
            return name, [self.iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for _ in range(keys)]

        # A few threads: moto's server is threaded, and the set-up is not measured.
        with ThreadPoolExecutor(4) as pool:
            return dict(pool.map(one, range(n)))

    def depth(self, url=None):
        a = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def rfc3339(t=None):
    t = t or datetime.now(timezone.utc)
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def create_key_record(event_id, actor, user, key_id, event_time=None):
    """The CloudTrail record of `actor` (an IAM user) creating `key_id` for `user`."""
    return {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": f"AIDA{actor.upper()}",
            "arn": f"arn:aws:iam::{ACCOUNT}:user/{actor}",
            "accountId": ACCOUNT,
            "accessKeyId": "AKIACALLERKEY",
            "userName": actor,
        },
        "eventTime": event_time or rfc3339(),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateAccessKey",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"userName": user},
        "responseElements": {
            "accessKey": {"accessKeyId": key_id, "status": "Active", "userName": user, "createDate": "Nov 28, 2026 10:00:00 AM"}
        },
        "requestID": f"req-{event_id}",
        "eventID": event_id,
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }


def envelope(record, event_id):
    """The envelope moto's EventBridge → SQS delivery produces: no `account`."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "time": record["eventTime"][:19] + "Z",
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }


def recorded_entries(recording):
    """The JSON objects of a moto recording. moto's threads append the
    object and its newline in two writes, so under concurrent requests two
    objects can share a line: decode object by object instead of by line. A
    stretch that does not decode yields None and is skipped up to the next
    entry."""
    decoder = json.JSONDecoder()
    i, n = 0, len(recording)
    while i < n:
        while i < n and recording[i] in " \r\n\t":
            i += 1
        if i >= n:
            break
        try:
            entry, i = decoder.raw_decode(recording, i)
            yield entry
        except ValueError:
            yield None
            nxt = recording.find('{"headers"', i + 1)
            i = n if nxt < 0 else nxt


def count_operations(recording, exclude_agent=MONITOR_AGENT):
    """Operation → count from a moto recording, leaving out requests whose
    User-Agent carries `exclude_agent`."""
    ops = Counter()
    for entry in recorded_entries(recording):
        if entry is None:
            ops["(unparsed)"] += 1
            continue
        headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
        if exclude_agent and exclude_agent in headers.get("user-agent", ""):
            continue
        target = headers.get("x-amz-target")
        if target:
            ops[target.split(".")[-1]] += 1
            continue
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        query = urllib.parse.parse_qs(body) or urllib.parse.parse_qs(urllib.parse.urlparse(entry.get("url", "")).query)
        action = (query.get("Action") or ["?"])[0]
        ops[action] += 1
    return ops


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
