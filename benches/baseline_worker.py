#!/usr/bin/env python3
"""The straightforward worker keywatch is compared with: plain boto3, one loop.

receive 10 → per message: parse, ListAccessKeys for the user, PutEvents of
the finding (one call per finding), DeleteMessage (one call per message).

Same input and finding semantics as keywatch, as far as a benchmark needs:
the user is responseElements.accessKey.userName, else
requestParameters.userName, else userIdentity.userName (an IAMUser acting on
itself); more than one Active key → a FAILED finding, a key-reducing event
(delete, deactivate) leaving at most one → PASSED; published with Source
"keywatch" and DetailType "IAM Access Key Finding". Not an access-key event,
a failed call, an unknown user → deleted without a finding.

Exits once the queue has stayed empty for --idle-secs. Credentials, region and
endpoint come from the standard AWS environment variables.

Usage: baseline_worker.py --queue-url URL --bus BUS [--idle-secs 3]
"""

import argparse
import hashlib
import json
import sys
import time
from datetime import datetime, timezone

import boto3

KEY_EVENTS = {"CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"}
CONTROL_ID = "CIS-AWS-1.13"


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def target_user(detail):
    response = detail.get("responseElements") or {}
    user = ((response.get("accessKey") or {}).get("userName")) or None
    if user:
        return user
    user = (detail.get("requestParameters") or {}).get("userName")
    if user:
        return user
    identity = detail.get("userIdentity") or {}
    if identity.get("type") == "IAMUser":
        return identity.get("userName")
    return None


def finding(detail, account, user, active, status, now):
    event_time = parse_time(detail["eventTime"])
    fid = hashlib.sha256(f"{CONTROL_ID}\0{account}\0{user}".encode()).hexdigest()[:32]
    return {
        "schema_version": "1.0",
        "finding_id": fid,
        "control_id": CONTROL_ID,
        "status": status,
        "severity": "HIGH" if status == "FAILED" else "INFORMATIONAL",
        "account_id": account,
        "user_name": user,
        "active_key_count": len(active),
        "active_keys": [
            {"access_key_id": k["AccessKeyId"], "status": k["Status"], "created_at": k["CreateDate"].isoformat()}
            for k in active
        ],
        "trigger": {
            "event_id": detail.get("eventID"),
            "event_name": detail.get("eventName"),
            "event_time": detail.get("eventTime"),
        },
        "detected_at": now.isoformat(),
        "detection_latency_seconds": (now - event_time).total_seconds(),
    }


def handle(body, iam, events, bus):
    """True when the message is done (delete it)."""
    try:
        envelope = json.loads(body)
        detail = envelope["detail"]
    except (ValueError, KeyError, TypeError):
        return False  # leave it for the dead-letter queue
    if detail.get("eventName") not in KEY_EVENTS or detail.get("errorCode"):
        return True
    account = envelope.get("account") or detail.get("recipientAccountId")
    user = target_user(detail)
    if not user:
        return True
    try:
        keys = []
        for page in iam.get_paginator("list_access_keys").paginate(UserName=user):
            keys.extend(page["AccessKeyMetadata"])
    except iam.exceptions.NoSuchEntityException:
        return True
    active = [k for k in keys if k["Status"] == "Active"]
    reducing = detail["eventName"] == "DeleteAccessKey" or (
        detail["eventName"] == "UpdateAccessKey" and (detail.get("requestParameters") or {}).get("status") != "Active"
    )
    if len(active) > 1:
        status = "FAILED"
    elif reducing:
        status = "PASSED"
    else:
        return True
    doc = finding(detail, account, user, active, status, datetime.now(timezone.utc))
    out = events.put_events(
        Entries=[{"Source": "keywatch", "DetailType": "IAM Access Key Finding", "Detail": json.dumps(doc), "EventBusName": bus}]
    )
    return out.get("FailedEntryCount", 0) == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue-url", required=True)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--idle-secs", type=float, default=3.0)
    ap.add_argument("--wait-secs", type=int, default=1)
    args = ap.parse_args()

    sqs = boto3.client("sqs")
    iam = boto3.client("iam", region_name="us-east-1")
    events = boto3.client("events")
    handled = 0
    idle_since = None
    while True:
        out = sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=args.wait_secs)
        messages = out.get("Messages", [])
        if not messages:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= args.idle_secs:
                break
            continue
        idle_since = None
        for m in messages:
            if handle(m["Body"], iam, events, args.bus):
                sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=m["ReceiptHandle"])
            handled += 1
    print(json.dumps({"handled": handled}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
