"""The keywatch demo on a local AWS emulator (moto server). Run scripts/demo.sh.

Starts moto and keywatch on free 127.0.0.1 ports, wires the production
pipeline on the emulator, makes a user's second key active, delivers the
CloudTrail event that AWS would, and prints the findings as they arrive.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone

import boto3

ACCOUNT = "123456789012"
FINDINGS_BUS = "keywatch-findings"
PATTERN = {
    "source": ["aws.iam"],
    "detail-type": ["AWS API Call via CloudTrail"],
    "detail": {
        "eventSource": ["iam.amazonaws.com"],
        "eventName": ["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"],
    },
}


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout, want=200):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == want:
                    return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def cloudtrail(event_name, actor, request, response):
    """A CloudTrail record as EventBridge delivers it for IAM."""
    return {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAADMINEXAMPLE",
            "arn": f"arn:aws:iam::{ACCOUNT}:user/{actor}",
            "accountId": ACCOUNT,
            "userName": actor,
        },
        "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": request,
        "responseElements": response,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }


def put_cloudtrail(events, detail):
    out = events.put_events(
        Entries=[{"Source": "aws.iam", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(detail)}]
    )
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

    procs = []
    workdir = tempfile.mkdtemp(prefix="keywatch-demo-")
    try:
        port = free_port()
        say(f"Starting the AWS emulator on 127.0.0.1:{port}")
        procs.append(
            subprocess.Popen(
                [args.moto_server, "-H", "127.0.0.1", "-p", str(port)],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        endpoint = f"http://127.0.0.1:{port}"
        if not wait_http(f"{endpoint}/moto-api/", 30):
            raise SystemExit("the emulator did not start")
        session = boto3.session.Session(aws_access_key_id="demo", aws_secret_access_key="demo", region_name="us-east-1")
        sqs = session.client("sqs", endpoint_url=endpoint)
        events = session.client("events", endpoint_url=endpoint)
        iam = session.client("iam", endpoint_url=endpoint)

        say("Creating the input queue with its DLQ, the CloudTrail rule, and the findings bus")
        dlq = sqs.create_queue(QueueName="keywatch-dlq")["QueueUrl"]
        queue = sqs.create_queue(
            QueueName="keywatch-input",
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn(sqs, dlq), "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        events.put_rule(Name="keywatch-iam-key-events", EventPattern=json.dumps(PATTERN))
        events.put_targets(Rule="keywatch-iam-key-events", Targets=[{"Id": "input", "Arn": queue_arn(sqs, queue)}])
        events.create_event_bus(Name=FINDINGS_BUS)
        findings = sqs.create_queue(QueueName="keywatch-findings-out")["QueueUrl"]
        events.put_rule(
            Name="findings-to-siem",
            EventBusName=FINDINGS_BUS,
            EventPattern=json.dumps({"source": ["keywatch"]}),
        )
        events.put_targets(
            Rule="findings-to-siem", EventBusName=FINDINGS_BUS, Targets=[{"Id": "siem", "Arn": queue_arn(sqs, findings)}]
        )

        admin = f"127.0.0.1:{free_port()}"
        log_path = os.path.join(workdir, "keywatch.log")
        say(f"Starting keywatch (admin port {admin}, log {log_path})")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KEYWATCH_QUEUE_URL": queue,
            "KEYWATCH_FINDINGS_BUS": FINDINGS_BUS,
            "KEYWATCH_METRICS_ADDR": admin,
            "KEYWATCH_QUEUE_METRICS_INTERVAL_SECS": "5",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        log = open(log_path, "w")
        worker = subprocess.Popen([args.keywatch, "run"], env=env, stdout=log, stderr=log)
        procs.insert(0, worker)
        if not wait_http(f"http://{admin}/readyz", 30):
            print(open(log_path).read(), file=sys.stderr)
            raise SystemExit("keywatch did not become ready")

        say("alice has one access key; an administrator creates a second one")
        iam.create_user(UserName="alice")
        iam.create_access_key(UserName="alice")
        second = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
        put_cloudtrail(
            events,
            cloudtrail(
                "CreateAccessKey",
                "admin",
                {"userName": "alice"},
                {"accessKey": {"accessKeyId": second, "status": "Active", "userName": "alice",
                               "createDate": datetime.now(timezone.utc).strftime("%b %d, %Y %I:%M:%S %p")}},
            ),
        )
        envelope = next_finding(sqs, findings, 30)
        if envelope is None:
            print(open(log_path).read(), file=sys.stderr)
            raise SystemExit("no finding arrived")
        say("Finding on the findings bus:")
        show(envelope, datetime.now(timezone.utc))

        say(f"The administrator deactivates {second}")
        iam.update_access_key(UserName="alice", AccessKeyId=second, Status="Inactive")
        put_cloudtrail(
            events,
            cloudtrail("UpdateAccessKey", "admin", {"userName": "alice", "accessKeyId": second, "status": "Inactive"}, None),
        )
        envelope = next_finding(sqs, findings, 30)
        if envelope is None:
            print(open(log_path).read(), file=sys.stderr)
            raise SystemExit("no resolution finding arrived")
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
        say("keywatch's own count (from /metrics):")
        print("\n".join(lines), flush=True)

        say("Stopping keywatch with SIGTERM")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=40)
        say(f"keywatch exited with {code}")
        return 0 if code == 0 else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
