"""CloudTrail records of the IAM access-key calls, and the EventBridge
envelopes they arrive in, for the demo, the benchmarks and the stack check.

Everything starts from one file, tests/fixtures/cloudtrail_template.json: the
envelope moto's EventBridge → SQS delivery produces (no `account`) around the
record of an IAM user's CreateAccessKey call, with the fields and values of
the Rust tests' builder (tests/common/cloudtrail.rs). The builders here copy
it and set what differs per event: the call, its time and ids, the caller,
the account, the request and the response. Standard library only.
"""

import copy
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "cloudtrail_template.json"
with open(TEMPLATE_PATH, encoding="utf-8") as _f:
    TEMPLATE = json.load(_f)

# The template's account: moto's default one, where the static test credentials act.
ACCOUNT = TEMPLATE["detail"]["recipientAccountId"]
SOURCE = TEMPLATE["source"]
DETAIL_TYPE = TEMPLATE["detail-type"]
CREATE_DATE = TEMPLATE["detail"]["responseElements"]["accessKey"]["createDate"]


def rfc3339(t=None):
    """`t` (default: now) as CloudTrail writes eventTime, in UTC with microseconds."""
    t = t or datetime.now(timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def record(event_name, event_id, actor, request, response, account=ACCOUNT, event_time=None):
    """The record of `actor` (an IAM user of `account`) calling `event_name`
    with `request`, answered by `response` (None for calls with no answer).
    `event_id` None: a fresh UUID."""
    event_id = event_id or str(uuid.uuid4())
    r = copy.deepcopy(TEMPLATE["detail"])
    r["userIdentity"].update(
        principalId=f"AIDA{actor.upper()}",
        arn=f"arn:aws:iam::{account}:user/{actor}",
        accountId=account,
        userName=actor,
    )
    r.update(
        eventName=event_name,
        eventTime=event_time or rfc3339(),
        requestParameters=request,
        responseElements=response,
        requestID=f"req-{event_id}",
        eventID=event_id,
        recipientAccountId=account,
    )
    return r


def create_key(event_id, actor, user, key_id, account=ACCOUNT, event_time=None, create_date=CREATE_DATE):
    """The record of `actor` creating `key_id` (Active) for `user`."""
    response = {"accessKey": {"accessKeyId": key_id, "status": "Active", "userName": user, "createDate": create_date}}
    return record("CreateAccessKey", event_id, actor, {"userName": user}, response, account, event_time)


def update_key(event_id, actor, user, key_id, status, account=ACCOUNT, event_time=None):
    """The record of `actor` setting `key_id` of `user` to `status`."""
    request = {"accessKeyId": key_id, "status": status, "userName": user}
    return record("UpdateAccessKey", event_id, actor, request, None, account, event_time)


def envelope(detail, envelope_id=None):
    """`detail` (a record) in the envelope moto's EventBridge → SQS delivery
    produces: no `account`, `time` to the second."""
    env = copy.deepcopy({k: v for k, v in TEMPLATE.items() if k != "detail"})
    env.update(id=envelope_id or str(uuid.uuid4()), time=detail["eventTime"][:19] + "Z", detail=detail)
    return env


def put_entry(detail, bus=None):
    """The PutEvents entry that puts `detail` (a record) on `bus` (None: the
    default bus) as CloudTrail does."""
    entry = {"Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail)}
    if bus:
        entry["EventBusName"] = bus
    return entry
