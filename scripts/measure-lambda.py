#!/usr/bin/env python3
"""Cold start and per-batch time of the Lambda function's `bootstrap` binary,
on the local emulator, through a stand-in for the Lambda runtime API.

Usage (from the repository root, after
`cargo build --release --features lambda --bin bootstrap`):

    .venv/bin/python scripts/measure-lambda.py target/release/bootstrap [--batches 20] [--batch-size 10]

It starts a moto server on a free 127.0.0.1 port, makes the worker's queue,
findings bus and, for each batch, IAM users with two active keys each, then runs `bootstrap`
with AWS_LAMBDA_RUNTIME_API pointing at its own runtime API and prints:
- cold start: from the process start to its first
  `GET /2018-06-01/runtime/invocation/next` (the settings read, the AWS clients
  built, sts:GetCallerIdentity and the queue checked: what Lambda bills as
  init);
- per batch: the first (which opens the connections to IAM and EventBridge)
  and the median and p90 of the rest, each from handing out an SQS event of `--batch-size` CreateAccessKey
  events (each a FAILED finding) to the function's response (IAM listings,
  PutEvents, the EMF lines).
No ledger table: the ledger's DynamoDB calls are not in the figures. Every
event is for one account, so after the first batch the per-account IAM rate
limit (KEYWATCH_IAM_RATE_PER_ACCOUNT, 20 requests a second, the burst as
large) paces the listings: --iam-rate 0 times the function alone.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Queue

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from kwtools import cloudtrail  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


class RuntimeApi:
    """GET .../invocation/next hands out the next event; POST .../response ends it."""

    def __init__(self) -> None:
        self.events: Queue = Queue()
        self.answers: Queue = Queue()
        self.first_next: float | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if api.first_next is None:
                    api.first_next = time.monotonic()
                request_id, body = api.events.get()
                api.sent = time.monotonic()
                data = body.encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 300_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:keywatch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.answers.put((time.monotonic() - api.sent, self.path, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bootstrap")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument(
        "--iam-rate",
        default="20",
        help="KEYWATCH_IAM_RATE_PER_ACCOUNT (default 20, keywatch's default; 0 turns the limit off to time the function alone)",
    )
    args = p.parse_args()

    port = free_port()
    moto = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fn = None
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        sqs, iam, events = boto3.client("sqs", **kw), boto3.client("iam", **kw), boto3.client("events", **kw)
        queue_url = sqs.create_queue(QueueName="keywatch-events")["QueueUrl"]
        events.create_event_bus(Name="keywatch-findings")
        # Users of their own for each batch: a key event for a user whose
        # listing the function has just read is another case (its cache).
        batches = []
        for b in range(args.batches):
            users = []
            for i in range(args.batch_size):
                user = f"measure-{b}-{i}"
                iam.create_user(UserName=user)
                keys = [iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(2)]
                users.append((user, keys[1]))
            batches.append(users)

        api = RuntimeApi()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_RUNTIME_API": api.addr,
            "AWS_LAMBDA_FUNCTION_NAME": "keywatch",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "KEYWATCH_QUEUE_URL": queue_url,
            "KEYWATCH_FINDINGS_BUS": "keywatch-findings",
            "AWS_ENDPOINT_URL": url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "KEYWATCH_IAM_RATE_PER_ACCOUNT": args.iam_rate,
        }
        log = tempfile.NamedTemporaryFile(prefix="bootstrap-", suffix=".log", delete=False)
        started = time.monotonic()
        fn = subprocess.Popen([args.bootstrap], env=env, stdout=log, stderr=log)
        durations = []
        for b, users in enumerate(batches):
            records = []
            for i, (user, key) in enumerate(users):
                envelope = cloudtrail.envelope(cloudtrail.create_key(f"evt-{b}-{i}", "admin", user, key))
                records.append(
                    {
                        "messageId": str(uuid.uuid4()),
                        "receiptHandle": "r",
                        "body": json.dumps(envelope),
                        "attributes": {"ApproximateReceiveCount": "1"},
                        "messageAttributes": {},
                        "eventSource": "aws:sqs",
                        "awsRegion": "us-east-1",
                    }
                )
            api.events.put((f"req-{b}", json.dumps({"Records": records})))
            took, path, body = api.answers.get(timeout=120)
            answer = json.loads(body)
            if not path.endswith("/response") or answer.get("batchItemFailures"):
                raise SystemExit(f"batch {b}: {path} {body!r}; log {log.name}")
            durations.append(took)
        assert api.first_next is not None
        cold = api.first_next - started
        first, rest = durations[0], sorted(durations[1:])
        print(f"cold start (process start to the first /next): {cold * 1000:.0f} ms")
        print(f"first batch of {args.batch_size} (new connections to each service): {first * 1000:.0f} ms")
        if rest:
            print(
                f"the next {len(rest)} batches of {args.batch_size}: median {statistics.median(rest) * 1000:.0f} ms, "
                f"p90 {rest[max(0, int(len(rest) * 0.9) - 1)] * 1000:.0f} ms, max {rest[-1] * 1000:.0f} ms"
            )
        return 0
    finally:
        if fn is not None:
            fn.kill()
            fn.wait()
        moto.kill()
        moto.wait()


if __name__ == "__main__":
    sys.exit(main())
