"""The local AWS emulator (moto server) and keywatch's pipeline on it, for
the demo, the benchmarks and scripts/check-infra.sh.

A moto server on a free 127.0.0.1 port, started in a temporary directory (its
request recorder writes its file into its working directory) and stopped by
pid; the production wiring on it (default-bus rule → input queue with its
DLQ, findings bus → rule → findings queue); the requests it recorded, by
operation. Needs boto3 (the venv of scripts/python-env.sh).

Run as a script, it wraps a command in a private emulator:

    python scripts/kwtools/emulator.py MOTO_SERVER -- COMMAND [ARG...]

starts MOTO_SERVER, runs COMMAND with each `{endpoint}` in its arguments
replaced by the emulator's URL, stops the emulator and exits with COMMAND's
status.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

FINDINGS_BUS = "keywatch-findings"
MONITOR_AGENT = "kwbench-monitor"
KEY_EVENT_PATTERN = json.dumps(
    {
        "source": ["aws.iam"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": ["iam.amazonaws.com"], "eventName": ["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"]},
    }
)

# Requests from 127.0.0.1 must not go through a proxy.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url, method="GET", data=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def wait_http(url, timeout=30, proc=None):
    """Polls `url` until it answers 200: True; False after `timeout` seconds,
    or as soon as `proc` (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (OSError, http.client.HTTPException):
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


class Moto:
    """moto_server on a free loopback port, in a temporary directory (kept,
    with its log, after stop(): the benchmarks write their workers' logs
    there too). Also a context manager that stops it."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="keywatch-moto-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "moto.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        if not wait_http(f"{self.url}/moto-api/", 30, self.proc):
            self.stop()
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:]
            raise SystemExit(f"moto_server did not come up on {self.url} (exit {self.proc.returncode}); its log:\n{tail}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

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
        fetch(f"{self.url}/moto-api/reset", method="POST", data=b"")

    def recorder(self, action):
        fetch(f"{self.url}/moto-api/recorder/{action}", method="POST", data=b"")

    def recording(self):
        return fetch(f"{self.url}/moto-api/recorder/download-recording").decode()

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
        self.moto = moto
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

    def ledger_table(self, name="keywatch-ledger"):
        """Creates the ledger table as the central stack's LedgerTable (key
        finding_id, sparse index open on open_account); returns its name."""
        cfg = Config(user_agent_extra=MONITOR_AGENT, retries={"max_attempts": 3, "mode": "standard"})
        ddb = boto3.client("dynamodb", endpoint_url=self.moto.url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing", config=cfg)
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "finding_id", "AttributeType": "S"},
                                  {"AttributeName": "open_account", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "finding_id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{"IndexName": "open", "KeySchema": [{"AttributeName": "open_account", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}],
        )
        return name

    def arn(self, url):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def keywatch_env(self, admin_addr, **extra):
        """Environment of `keywatch run` on this pipeline, its admin port on
        `admin_addr`; `extra` adds or overrides variables."""
        env = self.moto.env()
        env.update(KEYWATCH_QUEUE_URL=self.queue_url, KEYWATCH_FINDINGS_BUS=FINDINGS_BUS, KEYWATCH_METRICS_ADDR=admin_addr)
        env.update(extra)
        return env

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


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        print("usage: emulator.py MOTO_SERVER -- COMMAND [ARG...]  ({endpoint} in an ARG: the emulator's URL)",
              file=sys.stderr)
        return 2
    # SIGTERM as an exception, so that the emulator is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    moto = Moto(argv[0])
    print(f"moto server pid {moto.proc.pid} on {moto.url}", file=sys.stderr, flush=True)
    try:
        return subprocess.call([a.replace("{endpoint}", moto.url) for a in argv[2:]])
    finally:
        moto.stop()
        shutil.rmtree(moto.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
