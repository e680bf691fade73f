#!/usr/bin/env python3
"""Deploy infra/central.yaml to a local AWS emulator (moto server) and, with
--verify, prove that the stack really wires the keywatch pipeline.

Run it with the project venv (scripts/python-env.sh creates it):

    .venv/bin/moto_server -H 127.0.0.1 -p 5123 &
    .venv/bin/python infra/local_deploy.py --endpoint-url http://127.0.0.1:5123
    .venv/bin/python infra/local_deploy.py --endpoint-url http://127.0.0.1:5123 --verify

stdout carries one JSON object: the stack outputs. Progress, stack events on
failure and the verification results go to stderr. Exit status: 0 on success,
1 when the deploy or a verification check fails, 2 on bad usage.

The local deploy sets DeployWorker=false and CreateAlarms=false, which leave
out the resource types the emulator's CloudFormation lacks (ECS service
autoscaling, CloudWatch alarms); see infra/README.md. The queues, the
rule-target dead-letter queue and the rules' DeadLetterConfig/RetryPolicy are
deployed. ScanSchedule is empty (no scan schedule rule) unless --parameter sets
one: moto never fires a schedule, but it treats a rule without an event pattern
as matching every event on its bus and delivers the raw event, so a schedule
rule would put a copy of every default-bus event on the input queue. --verify
checks the schedule rule on a second stack of its own.
MemberRoleExternalId gets a fresh random value unless --parameter sets one.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
from kwtools import cloudtrail  # noqa: E402  (the CloudTrail records the demo and benchmarks use too)
from kwtools.checks import Checks  # noqa: E402

DEFAULT_TEMPLATE = HERE / "central.yaml"
# --verify also deploys the member stack next to it (organization bus present).
MEMBER_TEMPLATE = HERE / "member.yaml"
# --verify also deploys the Lambda stack on the central stack's outputs (the
# function is created, never invoked: invoking needs Docker).
LAMBDA_TEMPLATE = HERE / "lambda.yaml"

# Parameters a local deploy needs; anything else keeps the template default.
# (MemberRoleExternalId has no default: main() generates one per deploy.)
# ScanSchedule: see the module docstring (moto would forward every default-bus event).
LOCAL_PARAMETERS = {"DeployWorker": "false", "CreateAlarms": "false", "ScanSchedule": ""}
# --verify also creates the organization bus so its rule is exercised too.
VERIFY_ORGANIZATION_ID = "o-localverify01"

REQUIRED_OUTPUTS = [
    "QueueUrl",
    "QueueArn",
    "DeadLetterQueueUrl",
    "RuleTargetDeadLetterQueueUrl",
    "RuleTargetDeadLetterQueueArn",
    "FindingsBusName",
    "FindingsBusArn",
    "WorkerRoleArn",
    "ScalerPolicyArn",
    "LedgerTableName",
]

WORKER_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",  # scan fan-out onto its own queue (SendMessageBatch)
    "kms:Decrypt",
    "kms:GenerateDataKey",  # writing to the SSE-KMS input queue
    "events:PutEvents",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetAccountSummary",
    "iam:GetUser",
    "iam:ListUsers",  # scans
    "sts:AssumeRole",
    "securityhub:BatchImportFindings",
    # the ledger table and its index "open" (KEYWATCH_LEDGER_TABLE)
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
    "kms:Encrypt",  # the ledger's encryption, through DynamoDB only
    "kms:DescribeKey",
    "securityhub:BatchUpdateFindings",  # the workflow after an import
}
LEDGER_ACTIONS = {a for a in WORKER_ACTIONS if a.startswith("dynamodb:")}
# Allowed only with MemberAccounts=organization, explicitly denied otherwise.
ORGANIZATION_ACTION = "organizations:ListAccounts"
# Allowed (on that parameter alone) only with ExceptionsParameterName, explicitly denied otherwise.
EXCEPTIONS_ACTION = "ssm:GetParameter"
# Allowed (on the account's users) only with QuarantineAccounts, explicitly denied otherwise.
QUARANTINE_ACTION = "iam:UpdateAccessKey"
# --verify sets ExceptionsParameterName so that its statement is checked too.
VERIFY_EXCEPTIONS_PARAMETER = "/keywatch-local/exceptions"

# The scan schedule rule's constant target input, as the worker parses it.
SCAN_REQUEST = {"keywatch": "scan-request", "include_passed": True}
DEFAULT_SCAN_SCHEDULE = "rate(1 day)"

FINDING_DETAIL_TYPE = "IAM Access Key Finding"


class DeployError(Exception):
    """The stack did not reach CREATE_COMPLETE (message says why)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint-url", required=True, help="moto server URL on loopback, e.g. http://127.0.0.1:5123")
    p.add_argument("--region", default="us-east-1", help="region to deploy in (default us-east-1)")
    p.add_argument("--stack-name", default="keywatch-local", help="stack name (default keywatch-local)")
    p.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="template path (default infra/central.yaml)")
    p.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stack parameter (repeatable)",
    )
    p.add_argument("--timeout-secs", type=float, default=90.0, help="limit for the stack to settle (default 90)")
    p.add_argument("--verify", action="store_true", help="after the deploy, send events through the pipeline and check where they land")
    p.add_argument("--delivery-timeout-secs", type=float, default=10.0, help="how long --verify waits for an event to reach a queue (default 10)")
    args = p.parse_args(argv)

    url = urlparse(args.endpoint_url)
    host = url.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if url.scheme not in ("http", "https") or not loopback:
        p.error("--endpoint-url must point at an emulator on loopback (127.0.0.0/8, ::1 or localhost)")
    for item in args.parameter:
        if "=" not in item:
            p.error(f"--parameter expects KEY=VALUE, got {item!r}")
    return args


def clients(endpoint_url: str, region: str) -> dict[str, Any]:
    # Fixed dummy credentials: never pick up real ones for an emulator run.
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name=region,
    )
    cfg = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return {
        name: session.client(name, endpoint_url=endpoint_url, config=cfg)
        for name in ("cloudformation", "sqs", "events", "iam", "kms", "dynamodb", "s3", "lambda")
    }


def stack_status(cfn: Any, stack_name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def stack_events_text(cfn: Any, stack_name: str, limit: int = 25) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except (ClientError, BotoCoreError) as e:
        return f"  (could not read stack events: {e})"
    lines = []
    for ev in events[:limit]:
        reason = ev.get("ResourceStatusReason") or ""
        lines.append(
            f"  {ev.get('Timestamp')} {ev.get('LogicalResourceId')} "
            f"{ev.get('ResourceType')} {ev.get('ResourceStatus')} {reason}".rstrip()
        )
    return "\n".join(lines) if lines else "  (no stack events)"


def wait_settled(cfn: Any, stack_name: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        status = stack_status(cfn, stack_name)
        if status is None or not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise DeployError(
                f"stack {stack_name} still {status} after {timeout:.0f}s; last events:\n"
                + stack_events_text(cfn, stack_name)
            )
        time.sleep(0.5)


def deploy(cfn: Any, args: argparse.Namespace, parameters: dict[str, str]) -> dict[str, str]:
    """Create the stack (replacing one of the same name) and return its outputs."""
    existing = stack_status(cfn, args.stack_name)
    if existing not in (None, "DELETE_COMPLETE"):
        log(f"deleting existing stack {args.stack_name} ({existing})")
        cfn.delete_stack(StackName=args.stack_name)
        status = wait_settled(cfn, args.stack_name, args.timeout_secs)
        if status not in (None, "DELETE_COMPLETE"):
            raise DeployError(f"could not delete existing stack {args.stack_name}: {status}")

    body = args.template.read_text()
    log(f"creating stack {args.stack_name} from {args.template} with {parameters}")
    try:
        cfn.create_stack(
            StackName=args.stack_name,
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
    except Exception as e:  # noqa: BLE001 - the emulator can answer malformed errors (ResponseParserError)
        raise DeployError(f"CreateStack failed: {e}\n{stack_events_text(cfn, args.stack_name)}") from e

    status = wait_settled(cfn, args.stack_name, args.timeout_secs)
    if status != "CREATE_COMPLETE":
        raise DeployError(
            f"stack {args.stack_name} ended in {status}; stack events:\n{stack_events_text(cfn, args.stack_name)}"
        )
    stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


# ------------------------------------------------------- template policies

# moto stores no SQS queue policy (it skips AWS::SQS::QueuePolicy), so --verify
# reads the queue policies from the template, with the intrinsic functions the
# template uses resolved for given parameters, and checks that the same resolver
# reproduces the KMS key policy moto did store.
_NO_VALUE = object()


def load_template(path: Path) -> dict[str, Any]:
    """The template, short-form tags (!Sub, !If, ...) turned into their long form."""
    import yaml  # PyYAML comes with moto[server] (scripts/requirements.txt)

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
        name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", tag)
    return yaml.load(path.read_text(), Loader=Loader)


class Resolver:
    """Resolves Ref, Fn::If/Not/And/Or/Equals, Fn::Join/Split/Sub and Fn::GetAtt
    in a template fragment, as CloudFormation would for `parameters` (template
    defaults for the rest); `getatt(logical_id, attribute)` answers for resources,
    with attribute "Ref" for a Ref."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], pseudo: dict[str, str],
                 getatt: Callable[[str, str], str]) -> None:
        self.template, self.pseudo, self.getatt = template, pseudo, getatt
        self.params: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            raw = str(parameters.get(name, spec.get("Default", "")))
            self.params[name] = raw.split(",") if spec.get("Type") == "CommaDelimitedList" else raw
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def sub(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in self.pseudo:
                return self.pseudo[name]
            if "." in name:
                return self.getatt(*name.split(".", 1))
            return str(self.params[name])

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(n) for n in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg in self.pseudo:
                    return self.pseudo[arg]
                return self.params[arg] if arg in self.params else self.getatt(arg, "Ref")
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
            if key == "Fn::Split":
                return self.value(arg[1]).split(arg[0])
            if key == "Fn::Sub":
                return self.sub(arg if isinstance(arg, str) else arg[0])
            if key == "Fn::GetAtt":
                return self.getatt(arg[0], arg[1])
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not supported by this resolver")
        out = {}
        for key, sub_node in node.items():
            v = self.value(sub_node)
            if v is not _NO_VALUE:
                out[key] = v
        return out

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.value(self.template["Resources"][logical_id]["Properties"])


# ---------------------------------------------------------------- verification


def drain(sqs: Any, queue_url: str, want: int, timeout: float) -> list[dict[str, Any]]:
    """Receive (and delete) messages until `want` arrived or `timeout` passed."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in resp.get("Messages", []):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return got


def cloudtrail_event(bus: str, event_name: str, account: str) -> tuple[str, dict[str, Any]]:
    """A PutEvents entry with the record of alice calling `event_name` on bob's keys in `account`."""
    event_id = str(uuid.uuid4())
    if event_name == "CreateAccessKey":
        detail = cloudtrail.create_key(event_id, "alice", "bob", "AKIAEXAMPLEVERIFY001", account=account)
    else:
        detail = cloudtrail.record(event_name, event_id, "alice", {"userName": "bob"}, None, account=account)
    return event_id, cloudtrail.put_entry(detail, bus)


def put_events(events: Any, entries: list[dict[str, Any]]) -> None:
    resp = events.put_events(Entries=entries)
    assert resp.get("FailedEntryCount", 0) == 0, f"PutEvents rejected entries: {resp.get('Entries')}"


def verify(
    c: dict[str, Any],
    args: argparse.Namespace,
    outputs: dict[str, str],
    parameters: dict[str, str],
    verify_queue_url: str,
) -> Checks:
    sqs, events, iam, cfn, kms = c["sqs"], c["events"], c["iam"], c["cloudformation"], c["kms"]
    checks = Checks(errors=(AssertionError, ClientError, BotoCoreError, KeyError, ValueError), out=sys.stderr)
    stack_name, timeout = args.stack_name, args.delivery_timeout_secs
    queue_url = outputs.get("QueueUrl", "")
    account = outputs.get("QueueArn", "arn:aws:sqs:us-east-1:123456789012:x").split(":")[4]
    with_org = bool(parameters.get("OrganizationId"))
    org_accounts = parameters.get("MemberAccounts") == "organization"
    exceptions_parameter = parameters.get("ExceptionsParameterName", "")
    quarantine_accounts = parameters.get("QuarantineAccounts", "")

    def outputs_present() -> str:
        want = REQUIRED_OUTPUTS + (["OrganizationBusArn"] if with_org else [])
        missing = [k for k in want if not outputs.get(k)]
        assert not missing, f"missing outputs: {missing}"
        return f"{len(want)} outputs"

    def redrive_and_encryption() -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        want_count = int(parameters.get("MaxReceiveCount", "5"))
        assert int(redrive["maxReceiveCount"]) == want_count, f"maxReceiveCount {redrive['maxReceiveCount']} != {want_count}"
        assert redrive["deadLetterTargetArn"] == outputs["DeadLetterQueueArn"], (
            f"redrive target {redrive['deadLetterTargetArn']} is not the stack's DLQ"
        )
        assert attrs.get("KmsMasterKeyId"), "input queue has no KmsMasterKeyId (SSE-KMS)"
        dlq_attrs = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
        assert dlq_attrs.get("KmsMasterKeyId"), "dead-letter queue has no KmsMasterKeyId"
        rt_attrs = sqs.get_queue_attributes(QueueUrl=outputs["RuleTargetDeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
        assert rt_attrs.get("KmsMasterKeyId"), "rule-target dead-letter queue has no KmsMasterKeyId"
        assert rt_attrs["QueueArn"] == outputs["RuleTargetDeadLetterQueueArn"], "RuleTargetDeadLetterQueueArn output differs from the queue"
        return f"maxReceiveCount={want_count}, SSE-KMS on the input queue and both dead-letter queues"

    def rule_targets_have_dead_letter_queue() -> str:
        # Every rule the stack created, from its resource list (the emulator lists
        # resource types it skipped without a ResourceType).
        rule_ids = [
            r["LogicalResourceId"]
            for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
            if r.get("ResourceType") == "AWS::Events::Rule"
        ]
        want_rules = {"DefaultBusRule", "FindingsExampleRule"} | ({"OrganizationBusRule"} if with_org else set())
        if scan_schedule:
            want_rules.add("ScanScheduleRule")
        assert set(rule_ids) == want_rules, f"stack rules {sorted(rule_ids)} != {sorted(want_rules)}"
        buses = ["default", outputs["FindingsBusName"]]
        if with_org:
            buses.append(parameters.get("OrganizationBusName", "keywatch-org-events"))
        dlq_arn = outputs["RuleTargetDeadLetterQueueArn"]
        seen_rules, seen_targets = 0, 0
        for bus in buses:
            for rule in events.list_rules(EventBusName=bus, NamePrefix=f"{stack_name}-")["Rules"]:
                seen_rules += 1
                targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
                for t in targets:
                    seen_targets += 1
                    where = f"rule {rule['Name']} on {bus}, target {t.get('Id')}"
                    assert (t.get("DeadLetterConfig") or {}).get("Arn") == dlq_arn, (
                        f"{where}: DeadLetterConfig {t.get('DeadLetterConfig')} is not the rule-target DLQ {dlq_arn}"
                    )
                    retry = t.get("RetryPolicy") or {}
                    assert int(retry.get("MaximumRetryAttempts", 0)) > 0 and int(retry.get("MaximumEventAgeInSeconds", 0)) > 0, (
                        f"{where}: no RetryPolicy ({retry})"
                    )
        assert seen_rules == len(want_rules), f"found {seen_rules} rules on {buses}, expected {len(want_rules)}"
        want_targets = len(want_rules) - (0 if parameters.get("FindingsTargetArn") else 1)
        assert seen_targets == want_targets, f"found {seen_targets} rule targets, expected {want_targets}"
        return f"{seen_targets} targets of {seen_rules} rules carry DeadLetterConfig (rule-target DLQ) and RetryPolicy"

    def default_bus_delivers_key_events() -> str:
        sent = {}
        for name in ("CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"):
            event_id, entry = cloudtrail_event("default", name, account)
            sent[event_id] = name
            put_events(events, [entry])
        got = drain(sqs, queue_url, len(sent), timeout)
        seen = {}
        for body in got:
            assert body.get("source") == "aws.iam", f"unexpected source {body.get('source')}"
            assert body.get("detail-type") == cloudtrail.DETAIL_TYPE, f"unexpected detail-type {body.get('detail-type')}"
            seen[body["detail"]["eventID"]] = body["detail"]["eventName"]
        assert seen == sent, f"expected {sorted(sent.values())} on the input queue, got {sorted(seen.values())}"
        return "CreateAccessKey, UpdateAccessKey, DeleteAccessKey arrived as raw envelopes"

    def default_bus_filters_other_events() -> str:
        _, other_iam = cloudtrail_event("default", "CreateUser", account)
        _, read_only = cloudtrail_event("default", "ListAccessKeys", account)
        wrong_source = dict(other_iam, Source="aws.s3")
        put_events(events, [other_iam, read_only, wrong_source])
        got = drain(sqs, queue_url, 1, 2.0)
        assert not got, f"non-matching events reached the input queue: {[g.get('detail', {}).get('eventName') for g in got]}"
        return "CreateUser, ListAccessKeys and a non-IAM source were not delivered"

    def organization_bus_delivers() -> str:
        bus = parameters.get("OrganizationBusName", "keywatch-org-events")
        event_id, entry = cloudtrail_event(bus, "UpdateAccessKey", "210987654321")
        put_events(events, [entry])
        got = drain(sqs, queue_url, 1, timeout)
        ids = [g["detail"]["eventID"] for g in got]
        assert ids == [event_id], f"expected the forwarded event on the input queue, got {ids}"
        return f"event on {bus} reached the input queue"

    def findings_bus_accepts_and_routes() -> str:
        finding = {
            "finding_id": "kw-123456789012-bob",
            "account_id": account,
            "user_name": "bob",
            "active_access_keys": 2,
            "trigger": {"event_id": str(uuid.uuid4()), "event_name": "CreateAccessKey"},
        }
        put_events(
            events,
            [
                {
                    "Source": "keywatch",
                    "DetailType": FINDING_DETAIL_TYPE,
                    "Detail": json.dumps(finding),
                    "EventBusName": outputs["FindingsBusName"],
                }
            ],
        )
        got = drain(sqs, verify_queue_url, 1, timeout)
        assert len(got) == 1, f"finding did not reach the example rule's target (got {len(got)} messages)"
        body = got[0]
        assert body.get("source") == "keywatch" and body.get("detail-type") == FINDING_DETAIL_TYPE, f"unexpected envelope {body}"
        assert body["detail"]["trigger"]["event_id"] == finding["trigger"]["event_id"], "finding detail changed on the way"
        stray = drain(sqs, queue_url, 1, 1.0)
        assert not stray, "a finding leaked onto the input queue"
        return "finding reached the example rule's target, not the input queue"

    scan_schedule = parameters.get("ScanSchedule", DEFAULT_SCAN_SCHEDULE)

    def scan_rule_name(stack: str) -> str:
        return f"{stack}-scan-schedule"

    def scan_rule_arn(stack: str) -> str:
        # Spelled out as the template does: the policies name it with or without the rule.
        return f"arn:aws:events:{args.region}:{account}:rule/{scan_rule_name(stack)}"

    def check_scan_rule(stack: str, outs: dict[str, str], schedule: str) -> str:
        name = scan_rule_name(stack)
        rule = events.describe_rule(Name=name, EventBusName="default")
        assert rule["Arn"] == scan_rule_arn(stack), f"rule ARN {rule['Arn']} is not the one the policies name, {scan_rule_arn(stack)}"
        assert rule.get("State") == "ENABLED", f"rule {name} is {rule.get('State')}"
        assert rule.get("ScheduleExpression") == schedule, f"ScheduleExpression {rule.get('ScheduleExpression')!r} != {schedule!r}"
        assert not rule.get("EventPattern"), f"rule {name} has an event pattern: {rule.get('EventPattern')}"
        targets = events.list_targets_by_rule(Rule=name, EventBusName="default")["Targets"]
        assert len(targets) == 1, f"rule {name} has {len(targets)} targets, expected 1"
        t = targets[0]
        assert t["Arn"] == outs["QueueArn"], f"target {t['Arn']} is not the input queue {outs['QueueArn']}"
        assert json.loads(t.get("Input") or "null") == SCAN_REQUEST, f"target Input {t.get('Input')!r} is not {json.dumps(SCAN_REQUEST)}"
        assert not t.get("InputPath") and not t.get("InputTransformer"), f"target transforms its input: {t}"
        assert (t.get("DeadLetterConfig") or {}).get("Arn") == outs["RuleTargetDeadLetterQueueArn"], (
            f"target DeadLetterConfig {t.get('DeadLetterConfig')} is not the rule-target DLQ"
        )
        retry = t.get("RetryPolicy") or {}
        assert int(retry.get("MaximumRetryAttempts", 0)) > 0 and int(retry.get("MaximumEventAgeInSeconds", 0)) > 0, f"no RetryPolicy ({retry})"
        return f"{name}: {schedule} -> input queue, Input {t['Input']}, rule-target DLQ, retry policy"

    def no_scan_rule_without_schedule() -> str:
        name = scan_rule_name(stack_name)
        try:
            rule = events.describe_rule(Name=name, EventBusName="default")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return f"ScanSchedule empty: no rule {name}"
            raise
        raise AssertionError(f"ScanSchedule is empty, yet rule {name} exists: {rule}")

    def scan_schedule_rule_on_its_own_stack() -> str:
        # A second stack with the default schedule, so that moto's forwarding of every
        # default-bus event through a pattern-less rule reaches only that stack's queue,
        # never the main one. Its own findings bus name; no organization. Left in place:
        # the emulator cannot delete a role with an attached policy.
        scan_stack = f"{stack_name}-scan"
        scan_args = argparse.Namespace(**{**vars(args), "stack_name": scan_stack})
        scan_parameters = dict(
            LOCAL_PARAMETERS, ScanSchedule=DEFAULT_SCAN_SCHEDULE, FindingsBusName=f"{scan_stack}-findings"
        )
        try:
            outs = deploy(cfn, scan_args, scan_parameters)
        except DeployError as e:
            raise AssertionError(f"stack {scan_stack}: {e}") from e
        resources = cfn.describe_stack_resources(StackName=scan_stack)["StackResources"]
        rules = sorted(r["LogicalResourceId"] for r in resources if r.get("ResourceType") == "AWS::Events::Rule")
        assert "ScanScheduleRule" in rules, f"stack {scan_stack} rules {rules} lack ScanScheduleRule"
        return f"stack {scan_stack}: {check_scan_rule(scan_stack, outs, DEFAULT_SCAN_SCHEDULE)}"

    def policy_statement(doc: Any, sid: str) -> dict[str, Any]:
        if isinstance(doc, str):
            doc = json.loads(doc)
        found = [st for st in doc["Statement"] if st.get("Sid") == sid]
        assert len(found) == 1, f"expected one statement {sid}, found {len(found)}"
        return found[0]

    def as_list(v: Any) -> list[Any]:
        return v if isinstance(v, list) else [v]

    loaded: dict[str, Any] = {}

    def template() -> dict[str, Any]:
        if "template" not in loaded:
            loaded["template"] = load_template(args.template)
        return loaded["template"]

    # Fn::GetAtt ...Arn of the resources the policies name, as deployed.
    rule_names = {
        "DefaultBusRule": (f"{stack_name}-iam-access-key-events", "default"),
        "OrganizationBusRule": (f"{stack_name}-org-iam-access-key-events", parameters.get("OrganizationBusName", "keywatch-org-events")),
        "FindingsExampleRule": (f"{stack_name}-findings-example", outputs.get("FindingsBusName", "")),
    }
    known_arns = {
        "Queue": outputs.get("QueueArn"),
        "DeadLetterQueue": outputs.get("DeadLetterQueueArn"),
        "RuleTargetDeadLetterQueue": outputs.get("RuleTargetDeadLetterQueueArn"),
        "QueueKey": outputs.get("QueueKeyArn"),
        "WorkerRole": outputs.get("WorkerRoleArn"),
        "FindingsBus": outputs.get("FindingsBusArn"),
        "OrganizationBus": outputs.get("OrganizationBusArn"),
    }

    known_refs = {
        "Queue": outputs.get("QueueUrl"),
        "DeadLetterQueue": outputs.get("DeadLetterQueueUrl"),
        "RuleTargetDeadLetterQueue": outputs.get("RuleTargetDeadLetterQueueUrl"),
    }

    def getatt(logical_id: str, attribute: str) -> str:
        if attribute == "Ref" and known_refs.get(logical_id):
            return known_refs[logical_id]
        assert attribute == "Arn", f"{logical_id}.{attribute} is not resolved here"
        if known_arns.get(logical_id) is None and logical_id in rule_names:
            name, bus = rule_names[logical_id]
            known_arns[logical_id] = events.describe_rule(Name=name, EventBusName=bus)["Arn"]
        assert known_arns.get(logical_id), f"no ARN known for {logical_id}"
        return known_arns[logical_id]

    def resolver(overrides: dict[str, str]) -> Resolver:
        pseudo = {"AWS::Partition": "aws", "AWS::Region": args.region, "AWS::AccountId": account, "AWS::StackName": stack_name}
        return Resolver(template(), {**parameters, **overrides}, pseudo, getatt)

    def rule_arns(with_organization: bool) -> set[str]:
        arns = {getatt("DefaultBusRule", "Arn"), scan_rule_arn(stack_name)}
        return arns | ({getatt("OrganizationBusRule", "Arn")} if with_organization else set())

    def resolver_reproduces_the_key_policy() -> str:
        deployed = kms.get_key_policy(KeyId=outputs["QueueKeyArn"], PolicyName="default")["Policy"]
        deployed = json.loads(deployed) if isinstance(deployed, str) else deployed  # moto answers an object
        resolved = resolver({}).properties("QueueKey")["KeyPolicy"]
        assert deployed == resolved, f"key policy as deployed {deployed} != as resolved from the template {resolved}"
        grant = policy_statement(deployed, "EventBridgeSendsToQueues")
        sources = as_list(grant["Condition"]["ArnEquals"]["aws:SourceArn"])
        assert scan_rule_arn(stack_name) in sources, f"the queue key's EventBridge grant omits {scan_rule_arn(stack_name)}"
        return f"deployed key policy = template resolved for this stack; its EventBridge grant names {len(sources)} rules incl. the scan schedule"

    def queue_policies_admit_the_rules_and_the_workers() -> str:
        # The deployed parameters, then each combination of no / some additional worker
        # and redrive roles, with and without the organization (when it was deployed:
        # its rule's ARN is needed).
        extra_worker = f"arn:aws:iam::{account}:role/keywatch-irsa"
        redrive = f"arn:aws:iam::{account}:role/ops-redrive,arn:aws:iam::{account}:role/ops-replay"
        organizations = ["", parameters["OrganizationId"]] if with_org else [""]
        cases = [{}] + [
            {"AdditionalWorkerRoleArns": w, "RedriveRoleArns": r, "OrganizationId": o}
            for w, r, o in itertools.product(["", extra_worker], ["", redrive], organizations)
        ]
        for overrides in cases:
            res = resolver(overrides)
            where = f"parameters {overrides or 'as deployed'}"
            org = bool(res.params["OrganizationId"])
            want_rules = rule_arns(org)
            doc = res.properties("QueuePolicy")["PolicyDocument"]
            allow = policy_statement(doc, "EventBridgeRulesSend")
            got = set(as_list(allow["Condition"]["ArnEquals"]["aws:SourceArn"]))
            assert got == want_rules, f"{where}: EventBridgeRulesSend admits {sorted(got)}, expected {sorted(want_rules)}"
            deny = policy_statement(doc, "DenySendExceptRules")
            got = set(as_list(deny["Condition"]["ArnNotEquals"]["aws:SourceArn"]))
            assert got == want_rules, f"{where}: DenySendExceptRules spares rules {sorted(got)}, expected {sorted(want_rules)}"
            exempt = as_list(deny["Condition"]["ArnNotEquals"].get("aws:PrincipalArn", []))
            want = [outputs["WorkerRoleArn"]] + [a for a in res.params["AdditionalWorkerRoleArns"] + res.params["RedriveRoleArns"] if a]
            assert sorted(exempt) == sorted(want), f"{where}: DenySendExceptRules spares principals {exempt}, expected {want}"
            consume = policy_statement(doc, "DenyConsumeExceptWorker")
            consumers = as_list(consume["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
            assert outputs["WorkerRoleArn"] in consumers, f"{where}: DenyConsumeExceptWorker does not spare the worker role"
            rt = res.properties("RuleTargetDeadLetterQueuePolicy")["PolicyDocument"]
            got = set(as_list(policy_statement(rt, "EventBridgeRulesSendUndeliverable")["Condition"]["ArnEquals"]["aws:SourceArn"]))
            want_rt = want_rules | {getatt("FindingsExampleRule", "Arn")}
            assert got == want_rt, f"{where}: the rule-target DLQ admits {sorted(got)}, expected {sorted(want_rt)}"
        return (
            f"{len(cases)} parameter sets: the rules (scan schedule included) may send, and the send deny spares "
            "the worker role, AdditionalWorkerRoleArns and RedriveRoleArns, no one else"
        )

    def dead_letter_queue_has_the_input_queue_denies() -> str:
        # The DLQ must not be a way around the input queue's policy: each of the input
        # queue's Deny statements has its counterpart on the DLQ, for the same actions,
        # sparing the same principals (the redrive roles may also consume there: a
        # redrive receives and deletes as its caller), and the EventBridge rules
        # spared on the input queue are not spared on the DLQ (none targets it).
        extra_worker = f"arn:aws:iam::{account}:role/keywatch-irsa"
        redrive = f"arn:aws:iam::{account}:role/ops-redrive"
        cases = [{}] + [
            {"AdditionalWorkerRoleArns": w, "RedriveRoleArns": r} for w, r in itertools.product(["", extra_worker], ["", redrive])
        ]
        dlq_arn = outputs["DeadLetterQueueArn"]
        policies = [
            r for r in template()["Resources"].values()
            if r.get("Type") == "AWS::SQS::QueuePolicy" and {"Ref": "DeadLetterQueue"} in as_list(r["Properties"]["Queues"])
        ]
        assert len(policies) == 1, f"expected one AWS::SQS::QueuePolicy on DeadLetterQueue, found {len(policies)}"
        for overrides in cases:
            res = resolver(overrides)
            where = f"parameters {overrides or 'as deployed'}"
            queue_doc = res.properties("QueuePolicy")["PolicyDocument"]
            dlq_doc = res.value(policies[0]["Properties"])["PolicyDocument"]
            dlq_denies = [st for st in dlq_doc["Statement"] if st["Effect"] == "Deny"]
            assert all(st.get("Principal") == "*" and st["Resource"] == dlq_arn for st in dlq_denies), (
                f"{where}: every DLQ deny must be for Principal * on the DLQ: {dlq_denies}"
            )
            redrive_roles = [a for a in res.params["RedriveRoleArns"] if a]
            for st in (s for s in queue_doc["Statement"] if s["Effect"] == "Deny"):
                acts = sorted(as_list(st["Action"]))
                twins = [d for d in dlq_denies if sorted(as_list(d["Action"])) == acts]
                assert len(twins) == 1, f"{where}: the DLQ has {len(twins)} deny statements for {acts} (input queue: {st['Sid']})"
                want_cond = json.loads(json.dumps(st["Condition"]))
                spared = want_cond.get("ArnNotEquals", {})
                spared.pop("aws:SourceArn", None)
                if "aws:PrincipalArn" in spared and "sqs:ReceiveMessage" in acts:
                    spared["aws:PrincipalArn"] = as_list(spared["aws:PrincipalArn"]) + redrive_roles
                got_cond = twins[0]["Condition"]
                for block in (want_cond, got_cond):
                    for values in block.values():
                        for key in values:
                            if isinstance(values[key], list):
                                values[key] = sorted(values[key])
                assert got_cond == want_cond, f"{where}: the DLQ's deny on {acts} has {got_cond}, expected {want_cond}"
        return (
            f"{len(cases)} parameter sets: the DLQ denies non-TLS access, sending but by the worker and redrive roles, "
            "and consuming but by the worker and redrive roles, as the input queue does"
        )

    def scaler_policy_reads_queue_depth_only() -> str:
        arn = outputs["ScalerPolicyArn"]
        meta = iam.get_policy(PolicyArn=arn)["Policy"]
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=meta["DefaultVersionId"])["PolicyVersion"]["Document"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        got = [(st["Effect"], sorted(as_list(st["Action"])), sorted(as_list(st["Resource"]))) for st in doc["Statement"]]
        want = [("Allow", ["sqs:GetQueueAttributes"], [outputs["QueueArn"]])]
        assert got == want, f"the KEDA scaler policy grants {got}, expected {want}"
        return "Allow sqs:GetQueueAttributes on the input queue, nothing else"

    def worker_statements() -> list[dict[str, Any]]:
        role_name = outputs["WorkerRoleArn"].rsplit("/", 1)[-1]
        statements: list[dict[str, Any]] = []
        attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
        assert attached, "worker role has no attached policy"
        for pol in attached:
            meta = iam.get_policy(PolicyArn=pol["PolicyArn"])["Policy"]
            doc = iam.get_policy_version(PolicyArn=pol["PolicyArn"], VersionId=meta["DefaultVersionId"])["PolicyVersion"]["Document"]
            if isinstance(doc, str):
                doc = json.loads(doc)
            statements.extend(doc["Statement"])
        return statements

    def worker_role_is_least_privilege() -> str:
        allowed: set[str] = set()
        denied: set[str] = set()
        for st in worker_statements():
            acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert all("*" not in a for a in acts), f"wildcard action in {st}"
            assert st["Effect"] in ("Allow", "Deny"), f"unexpected statement {st}"
            (allowed if st["Effect"] == "Allow" else denied).update(acts)
        want_allowed = WORKER_ACTIONS | ({ORGANIZATION_ACTION} if org_accounts else set())
        want_denied = set() if org_accounts else {ORGANIZATION_ACTION}
        (want_allowed if exceptions_parameter else want_denied).add(EXCEPTIONS_ACTION)
        (want_allowed if quarantine_accounts else want_denied).add(QUARANTINE_ACTION)
        assert allowed == want_allowed, (
            f"worker actions differ: extra {sorted(allowed - want_allowed)}, missing {sorted(want_allowed - allowed)}"
        )
        assert denied == want_denied, f"denied actions {sorted(denied)} != {sorted(want_denied)}"
        return (
            f"{len(allowed)} actions allowed, {ORGANIZATION_ACTION} {'allowed' if org_accounts else 'denied'}, "
            f"{EXCEPTIONS_ACTION} {'allowed' if exceptions_parameter else 'denied'}, "
            f"{QUARANTINE_ACTION} {'allowed' if quarantine_accounts else 'denied'}, no wildcards"
        )

    def ledger_table_is_the_record() -> str:
        table = c["dynamodb"].describe_table(TableName=outputs["LedgerTableName"])["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
        assert keys == {"finding_id": "HASH"}, f"ledger key schema {keys}"
        indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
        assert "open" in indexes, f"no index 'open' on the ledger: {sorted(indexes)}"
        open_keys = {k["AttributeName"]: k["KeyType"] for k in indexes["open"]["KeySchema"]}
        assert open_keys == {"open_account": "HASH"}, f"index 'open' key schema {open_keys}"
        billing = (table.get("BillingModeSummary") or {}).get("BillingMode")
        assert billing == "PAY_PER_REQUEST", f"ledger billing mode {billing}"
        # The emulator does not apply or report a table's encryption, point-in-time
        # recovery or TTL:
        # they are checked in the template resolved for this stack.
        props = resolver({}).properties("LedgerTable")
        sse = props.get("SSESpecification") or {}
        assert sse.get("SSEEnabled") is True and sse.get("SSEType") == "KMS", f"ledger encryption {sse}"
        assert sse.get("KMSMasterKeyId") == outputs["QueueKeyArn"], f"ledger key {sse.get('KMSMasterKeyId')} is not the stack's key"
        pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
        assert pitr is True, "ledger without point-in-time recovery"
        ttl = props.get("TimeToLiveSpecification") or {}
        assert ttl == {"AttributeName": "expires_at", "Enabled": True}, f"ledger TTL {ttl}"
        statements = [st for st in worker_statements() if LEDGER_ACTIONS & set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
        assert len(statements) == 1, f"expected one ledger statement, got {statements}"
        resources = statements[0]["Resource"]
        resources = sorted(resources if isinstance(resources, list) else [resources])
        want = sorted([table["TableArn"], table["TableArn"] + "/index/open"])
        assert resources == want, f"ledger statement on {resources}, expected {want}"
        return f"{outputs['LedgerTableName']}: on demand, SSE-KMS (stack key), PITR, TTL expires_at, index open; the worker's statement on it alone"

    def exceptions_parameter_is_scoped() -> str:
        reads = [st for st in worker_statements() if EXCEPTIONS_ACTION in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
        assert len(reads) == 1, f"expected one {EXCEPTIONS_ACTION} statement, got {reads}"
        resource = reads[0]["Resource"]
        want = f"arn:aws:ssm:{args.region}:{account}:parameter{exceptions_parameter}"
        assert resource == want, f"{EXCEPTIONS_ACTION} on {resource}, expected {want}"
        return f"{reads[0]['Effect']} {EXCEPTIONS_ACTION} on {resource} only"

    def security_hub_calls_are_scoped() -> str:
        want = {
            "securityhub:BatchImportFindings": f"arn:aws:securityhub:{args.region}:{account}:product/{account}/default",
            "securityhub:BatchUpdateFindings": f"arn:aws:securityhub:{args.region}:{account}:hub/default",
        }
        for action, resource in want.items():
            grants = [st for st in worker_statements() if action in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
            assert len(grants) == 1, f"expected one {action} statement, got {grants}"
            assert grants[0]["Resource"] == resource, f"{action} on {grants[0]['Resource']}, expected {resource}"
        return "BatchImportFindings on the default product, BatchUpdateFindings on the hub, nothing else"

    def member_role_assumption_is_scoped() -> str:
        assume = [st for st in worker_statements() if "sts:AssumeRole" in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
        assert len(assume) == 1, f"expected one sts:AssumeRole statement, got {assume}"
        cond = (assume[0].get("Condition") or {}).get("StringEquals") or {}
        accounts = parameters.get("MemberAccounts", "")
        want: dict[str, Any] = {}
        if with_org:
            want["aws:ResourceOrgID"] = parameters["OrganizationId"]
        if accounts and accounts != "organization":
            want["aws:ResourceAccount"] = accounts.split(",")
        elif not with_org:
            want["aws:ResourceAccount"] = [account]

        def norm(v: Any) -> Any:
            return sorted(v) if isinstance(v, list) else v

        got = {k: norm(v) for k, v in cond.items()}
        assert got == {k: norm(v) for k, v in want.items()}, f"sts:AssumeRole condition {cond} != {want}"
        return ", ".join(f"{k}={v}" for k, v in want.items())

    def worker_may_send_scan_requests() -> str:
        # The worker fans a scan request out onto its own queue: its policy allows
        # sqs:SendMessage there and kms:GenerateDataKey on the queue key, and the queue
        # policy's send deny exempts the worker role (and AdditionalWorkerRoleArns).
        allows = [st for st in worker_statements() if st["Effect"] == "Allow"]
        send = [st for st in allows if "sqs:SendMessage" in as_list(st["Action"])]
        assert [as_list(st["Resource"]) for st in send] == [[outputs["QueueArn"]]], f"sqs:SendMessage statements {send}"
        # (The ledger's statement allows the key through DynamoDB only: not for SQS.)
        gen = [st for st in allows if "kms:GenerateDataKey" in as_list(st["Action"]) and "kms:ViaService" not in str(st.get("Condition"))]
        assert [as_list(st["Resource"]) for st in gen] == [[outputs["QueueKeyArn"]]], f"kms:GenerateDataKey statements {gen}"
        deny = policy_statement(resolver({}).properties("QueuePolicy")["PolicyDocument"], "DenySendExceptRules")
        exempt = as_list(deny["Condition"]["ArnNotEquals"].get("aws:PrincipalArn", []))
        assert outputs["WorkerRoleArn"] in exempt, f"the queue policy's send deny does not spare the worker role: {exempt}"
        return "sqs:SendMessage on the input queue, kms:GenerateDataKey on its key, spared by the queue policy's send deny"

    def member_stack_forwards_to_the_organization_bus() -> str:
        # infra/member.yaml in the same (emulated) account: its rule on the default bus
        # forwards to the organization bus, whose rule feeds the input queue.
        member_stack = f"{stack_name}-member"
        rule_name = f"member-{stack_name}-forward"  # outside the central stack's name prefix
        external_id = parameters["MemberRoleExternalId"]
        member_args = argparse.Namespace(**{**vars(args), "stack_name": member_stack, "template": MEMBER_TEMPLATE})
        member_parameters = {
            "CentralEventBusArn": outputs["OrganizationBusArn"],
            "WorkerRoleArn": outputs["WorkerRoleArn"],
            "MemberRoleName": parameters.get("MemberRoleName", "keywatch-member"),
            "ExternalId": external_id,
            "ForwardRuleName": rule_name,
            "CreateAlarms": "false",
        }
        try:
            member = deploy(cfn, member_args, member_parameters)
        except DeployError as e:
            raise AssertionError(f"member stack: {e}") from e
        member_dlq_arn = sqs.get_queue_attributes(QueueUrl=member["ForwardDeadLetterQueueUrl"], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        targets = events.list_targets_by_rule(Rule=rule_name, EventBusName="default")["Targets"]
        assert len(targets) == 1 and targets[0]["Arn"] == outputs["OrganizationBusArn"], f"forwarding targets {targets}"
        assert (targets[0].get("DeadLetterConfig") or {}).get("Arn") == member_dlq_arn, (
            f"forwarding target DeadLetterConfig {targets[0].get('DeadLetterConfig')} is not the member stack's DLQ"
        )
        assert (targets[0].get("RetryPolicy") or {}).get("MaximumRetryAttempts"), f"forwarding target has no RetryPolicy: {targets[0]}"
        trust = iam.get_role(RoleName=member_parameters["MemberRoleName"])["Role"]["AssumeRolePolicyDocument"]
        if isinstance(trust, str):
            trust = json.loads(trust)
        [st] = trust["Statement"]
        assert st["Principal"] == {"AWS": outputs["WorkerRoleArn"]}, f"member role trusts {st['Principal']}"
        assert st.get("Condition") == {"StringEquals": {"sts:ExternalId": external_id}}, (
            f"member role trust condition {st.get('Condition')} does not require the central stack's external id"
        )
        # One event on the default bus now reaches the input queue twice: directly
        # through the central default-bus rule and forwarded through the org bus.
        event_id, entry = cloudtrail_event("default", "CreateAccessKey", account)
        put_events(events, [entry])
        got = drain(sqs, queue_url, 2, timeout)
        ids = [g["detail"]["eventID"] for g in got]
        assert ids == [event_id, event_id], f"expected the event twice on the input queue, got {ids}"
        return "forwarding target has its DLQ and retry policy, member role requires the external id, event forwarded"

    checks.run("stack outputs present", outputs_present)
    checks.run("input queue redrive to DLQ and SSE-KMS", redrive_and_encryption)
    checks.run("every rule target has the rule-target DLQ and a retry policy", rule_targets_have_dead_letter_queue)
    checks.run("default bus rule delivers the three IAM key events", default_bus_delivers_key_events)
    checks.run("default bus rule ignores other events", default_bus_filters_other_events)
    if with_org:
        checks.run("organization bus rule delivers forwarded events", organization_bus_delivers)
    checks.run("findings bus accepts a finding and the example rule routes it", findings_bus_accepts_and_routes)
    if scan_schedule:
        # Set with --parameter: moto also forwards every default-bus event through it
        # (see the module docstring), which the delivery checks above then report.
        checks.run("scan schedule rule puts a scan request on the input queue", lambda: check_scan_rule(stack_name, outputs, scan_schedule))
    else:
        checks.run("no scan schedule rule when ScanSchedule is empty", no_scan_rule_without_schedule)
    checks.run("queue key policy as deployed = template; it admits the scan schedule rule", resolver_reproduces_the_key_policy)
    checks.run("queue policies admit the stack's rules and spare exactly the worker and redrive roles", queue_policies_admit_the_rules_and_the_workers)
    checks.run("the DLQ has the input queue's deny statements (TLS, senders, consumers)", dead_letter_queue_has_the_input_queue_denies)
    checks.run("worker role grants exactly the worker's actions", worker_role_is_least_privilege)
    checks.run("the KEDA scaler policy reads the input queue's attributes only", scaler_policy_reads_queue_depth_only)
    checks.run("worker may send scan requests to its input queue", worker_may_send_scan_requests)
    checks.run("worker may assume the member role only in the organization or listed accounts", member_role_assumption_is_scoped)
    checks.run("worker reads the exceptions parameter and no other", exceptions_parameter_is_scoped)
    checks.run("the ledger table: key, index, billing, encryption, TTL, and the worker's access to it alone", ledger_table_is_the_record)
    checks.run("worker imports and updates Security Hub findings in its own account only", security_hub_calls_are_scoped)
    if with_org:
        # Last: the member stack's rule adds a second delivery of default-bus events.
        checks.run("member stack deploys and forwards through the organization bus", member_stack_forwards_to_the_organization_bus)
    if not scan_schedule:
        checks.run("with ScanSchedule, a rule puts a scan request on the input queue", scan_schedule_rule_on_its_own_stack)
    checks.run(
        "lambda stack: provided.al2023 function with the worker policy alone, mapping with partial batch responses",
        lambda: check_lambda_stack(c, args, outputs, exceptions_parameter),
    )
    return checks


def check_lambda_stack(c: dict[str, Any], args: argparse.Namespace, outputs: dict[str, str], exceptions_parameter: str) -> str:
    """Deploys infra/lambda.yaml on the central stack's outputs (a stand-in zip
    for the code: the function is created, not invoked) and checks what it made."""
    import io
    import zipfile

    bucket, key = f"{args.stack_name}-lambda-code", "keywatch/bootstrap.zip"
    c["s3"].create_bucket(Bucket=bucket)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    c["s3"].put_object(Bucket=bucket, Key=key, Body=code.getvalue())
    stack = f"{args.stack_name}-lambda"
    parameters = {
        "QueueArn": outputs["QueueArn"],
        "QueueUrl": outputs["QueueUrl"],
        "QueueKeyArn": outputs["QueueKeyArn"],
        "FindingsBusArn": outputs["FindingsBusArn"],
        "LedgerTableName": outputs["LedgerTableName"],
        "WorkerPolicyArn": outputs["WorkerPolicyArn"],
        "ExceptionsParameterName": exceptions_parameter,
        "CodeS3Bucket": bucket,
        "CodeS3Key": key,
    }
    try:
        out = deploy(c["cloudformation"], argparse.Namespace(**{**vars(args), "stack_name": stack, "template": LAMBDA_TEMPLATE}), parameters)
    except DeployError as e:
        raise AssertionError(f"lambda stack: {e}") from e
    fn = c["lambda"].get_function(FunctionName=stack)["Configuration"]
    assert fn["Runtime"] == "provided.al2023" and fn["Handler"] == "bootstrap", f"runtime {fn['Runtime']}, handler {fn['Handler']}"
    env = fn["Environment"]["Variables"]
    assert env["KEYWATCH_QUEUE_URL"] == outputs["QueueUrl"] and env["KEYWATCH_LEDGER_TABLE"] == outputs["LedgerTableName"], env
    assert env["KEYWATCH_FINDINGS_BUS"] == outputs["FindingsBusArn"] and env["KEYWATCH_LOG_FORMAT"] == "json", env
    want_exceptions = f"ssm:{exceptions_parameter}" if exceptions_parameter else None
    assert env.get("KEYWATCH_EXCEPTIONS_FILE") == want_exceptions, env
    role = fn["Role"].split("/")[-1]
    assert fn["Role"] == out["FunctionRoleArn"], f"function role {fn['Role']} != output {out['FunctionRoleArn']}"
    attached = [p["PolicyArn"] for p in c["iam"].list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
    # moto leaves a role's ManagedPolicyArns unattached (the central stack attaches
    # from the policy's side for that reason): then the template must name the
    # worker policy alone.
    if not attached:
        attached = load_template(LAMBDA_TEMPLATE)["Resources"]["FunctionRole"]["Properties"]["ManagedPolicyArns"]
        assert attached == [{"Ref": "WorkerPolicyArn"}], f"the function role's ManagedPolicyArns {attached}"
    else:
        assert attached == [outputs["WorkerPolicyArn"]], f"attached policies {attached}"
    inline = c["iam"].list_role_policies(RoleName=role)["PolicyNames"]
    doc = c["iam"].get_role_policy(RoleName=role, PolicyName=inline[0])["PolicyDocument"] if inline == ["logs"] else {}
    if isinstance(doc, str):
        # moto keeps a policy its CloudFormation created as the Python repr of the document.
        import ast

        doc = json.loads(doc) if doc.lstrip().startswith('{"') else ast.literal_eval(doc)
    actions = sorted(a for st in doc.get("Statement", []) for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))
    assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"], f"inline policies {inline}: {actions}"
    [mapping] = c["lambda"].list_event_source_mappings(FunctionName=stack)["EventSourceMappings"]
    assert mapping["EventSourceArn"] == outputs["QueueArn"], f"mapping source {mapping['EventSourceArn']}"
    assert mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], f"response types {mapping.get('FunctionResponseTypes')}"
    return f"function {stack} on {fn['Runtime']}, role with the worker policy and its log group only, mapping on the input queue"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    c = clients(args.endpoint_url, args.region)
    parameters = dict(LOCAL_PARAMETERS)
    # Required by the template; a random value as `openssl rand -hex 16` would give.
    parameters["MemberRoleExternalId"] = uuid.uuid4().hex
    verify_queue_url = ""
    try:
        if args.verify:
            parameters["OrganizationId"] = VERIFY_ORGANIZATION_ID
            parameters["ExceptionsParameterName"] = VERIFY_EXCEPTIONS_PARAMETER
            # A fresh stand-in consumer for the example findings rule (unique name:
            # SQS allows one purge a minute, and re-runs share the server).
            verify_queue_name = f"{args.stack_name}-verify-findings-{uuid.uuid4().hex[:8]}"
            verify_queue_url = c["sqs"].create_queue(QueueName=verify_queue_name)["QueueUrl"]
            arn = c["sqs"].get_queue_attributes(QueueUrl=verify_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            parameters["FindingsTargetArn"] = arn
        parameters.update(item.split("=", 1) for item in args.parameter)
        outputs = deploy(c["cloudformation"], args, parameters)
    except DeployError as e:
        log(f"ERROR: {e}")
        return 1
    except (ClientError, BotoCoreError) as e:
        log(f"ERROR: talking to the emulator at {args.endpoint_url}: {e}")
        return 1
    log(f"stack {args.stack_name} CREATE_COMPLETE")
    print(json.dumps(outputs, indent=2, sort_keys=True))
    if not args.verify:
        return 0
    checks = verify(c, args, outputs, parameters, verify_queue_url)
    log(f"verify: {checks.passed} passed, {checks.failed} failed")
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
