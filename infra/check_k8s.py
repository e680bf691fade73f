#!/usr/bin/env python3
"""Checks infra/k8s beyond what kubernetes-validate can.

kubernetes-validate (run by scripts/check-infra.sh with --strict) validates
core kinds against the Kubernetes OpenAPI schemas, but it only *warns* about a
kind it has no schema for, such as the CRDs ScaledObject, TriggerAuthentication
(keda.sh), ServiceMonitor and PrometheusRule (monitoring.coreos.com), and
kustomization.yaml (kind Kustomization, read by kustomize, never sent to the
API server). This script:

1. fails on any kind without a schema that is not one of those known kinds
   (a typo in a core kind's apiVersion would otherwise pass with a warning);
2. validates the CRDs against minimal structural schemas written from the KEDA
   and Prometheus Operator docs (required fields, known top-level spec keys),
   and the Kustomization against the fields kustomize defines;
3. cross-checks the manifests against each other and the worker's contract:
   references resolve, the ScaledObject scales the Deployment on the queue the
   worker reads, probes hit /healthz and /readyz on 9464, the grace period
   exceeds the drain timeout, Service and ServiceMonitor select the pods, the
   exceptions ConfigMap is mounted as a directory where KEYWATCH_EXCEPTIONS_FILE
   points and holds a well-formed file, the PodDisruptionBudget lets a drain
   evict a single replica, the NetworkPolicy lets only the scraper's pods
   (a namespace and a pod selector, no ipBlock) reach the admin port and
   nothing else in, the PrometheusRule's groups are those of
   dashboards/alerts.yaml, and kustomization.yaml lists exactly the manifests
   here with the Deployment's image.

Run with the lint venv (it has pyyaml, jsonschema and kubernetes-validate):
    .venv-lint/bin/python infra/check_k8s.py infra/k8s
Prints one line per failed check and a closing 'k8s: N passed, M failed'.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from kwtools.checks import Checks  # noqa: E402

K8S_VERSION = "1.30.0"
METRICS_PORT = 9464
ALERT_RULES = Path(__file__).resolve().parent.parent / "dashboards" / "alerts.yaml"
KUSTOMIZATION = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": _NAME, "namespace": _NAME, "labels": {"type": "object"}, "annotations": {"type": "object"}},
    "additionalProperties": False,
}

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": _NAME,
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {"type": "object"},
                    "advanced": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": _NAME, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}},
                                    "additionalProperties": False,
                                },
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "useCachedMetrics": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "minProperties": 1,
                "properties": {
                    "podIdentity": {
                        "type": "object",
                        "required": ["provider"],
                        "additionalProperties": False,
                        "properties": {
                            "provider": {"enum": ["aws", "aws-eks", "azure-workload", "gcp", "none"]},
                            "roleArn": {"type": "string"},
                            "identityOwner": {"enum": ["keda", "workload"]},
                            "identityId": {"type": "string"},
                        },
                        # KEDA: roleArn and identityOwner are mutually exclusive.
                        "not": {"required": ["roleArn", "identityOwner"]},
                    }
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "targetLabels": {"type": "array"},
                    "podTargetLabels": {"type": "array"},
                    "sampleLimit": {"type": "integer"},
                    "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}, "matchExpressions": {"type": "array"}}},
                    "namespaceSelector": {
                        "type": "object",
                        "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
                        "additionalProperties": False,
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "port": {"type": "string"},
                                "targetPort": {},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
                                "scrapeTimeout": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
                                "honorLabels": {"type": "boolean"},
                                "relabelings": {"type": "array"},
                                "metricRelabelings": {"type": "array"},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "query_offset": _DURATION,
                                "limit": {"type": "integer", "minimum": 0},
                                "partial_response_strategy": {"type": "string", "pattern": "^([Aa][Bb][Oo][Rr][Tt]|[Ww][Aa][Rr][Nn])?$"},
                                "labels": _STRING_MAP,
                                "rules": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                        "properties": {
                                            "alert": {"type": "string", "minLength": 1},
                                            "record": {"type": "string", "minLength": 1},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": _DURATION,
                                            "keep_firing_for": _DURATION,
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

# kustomization.yaml: the fields of kustomize's Kustomization that make sense here.
KUSTOMIZATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "resources"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": KUSTOMIZATION[0]},
        "kind": {"const": KUSTOMIZATION[1]},
        "metadata": {"type": "object"},
        "resources": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 1},
        "components": {"type": "array", "items": {"type": "string"}},
        "namespace": _NAME,
        "namePrefix": {"type": "string"},
        "nameSuffix": {"type": "string"},
        "labels": {"type": "array"},
        "commonLabels": _STRING_MAP,
        "commonAnnotations": _STRING_MAP,
        "patches": {"type": "array"},
        "replicas": {"type": "array"},
        "configMapGenerator": {"type": "array"},
        "secretGenerator": {"type": "array"},
        "generatorOptions": {"type": "object"},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "newName": {"type": "string", "minLength": 1},
                    "newTag": {"type": "string", "minLength": 1},
                    "digest": {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"},
                },
            },
        },
    },
}


def image_name(ref: str) -> str:
    """registry/repo[:tag][@digest] without tag and digest."""
    ref = ref.split("@", 1)[0]
    head, _, tail = ref.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


def load(dirpath: Path) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    paths = sorted(dirpath.glob("*.yaml")) + sorted(dirpath.glob("*.yml"))
    if not paths:
        raise SystemExit(f"FAIL no manifests in {dirpath}")
    for path in paths:
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            raise SystemExit(f"FAIL {path.name} is not valid YAML: {e}")
        docs.extend((path.name, doc) for doc in loaded if doc)
    return docs


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        print("usage: check_k8s.py DIR", file=sys.stderr)
        return 2
    docs = load(Path(argv[0]))
    c = Checks(errors=(AssertionError, KeyError, IndexError, TypeError, ValueError, jsonschema.ValidationError),
               show_passes=False)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, d in docs:
        by_kind.setdefault(d.get("kind", "?"), []).append(d)

    def one(kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in by_kind.get(kind, []) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}"
        return found[0]

    # 1 + 2: every document has a schema, core kinds strictly.
    for fname, d in docs:
        key = (d.get("apiVersion", ""), d.get("kind", ""))
        label = f"{fname}: {key[1]}/{d.get('metadata', {}).get('name')}"
        if key == KUSTOMIZATION:
            c.run(f"{fname} matches the Kustomization fields", lambda d=d: jsonschema.validate(d, KUSTOMIZATION_SCHEMA))
            continue
        if key in CRD_SCHEMAS:
            c.run(f"{label} matches its CRD schema", lambda d=d, key=key: jsonschema.validate(d, CRD_SCHEMAS[key]))
        else:

            def core(d: dict[str, Any] = d) -> None:
                try:
                    kv.validate(d, K8S_VERSION, strict=True)
                except kv.SchemaNotFoundError as e:
                    raise AssertionError(f"no schema for {d.get('apiVersion')} {d.get('kind')} (unknown kind or apiVersion): {e.message}")
                except kv.ValidationError as e:
                    raise AssertionError(f"{'.'.join(map(str, e.path))}: {e.message}")

            c.run(f"{label} validates strictly against Kubernetes {K8S_VERSION}", core)
        c.run(f"{label} is namespaced to keywatch", lambda d=d: (
            None if d["kind"] == "Namespace" else _assert(d["metadata"].get("namespace") == "keywatch", "namespace is not keywatch")
        ))

    # 3: cross-references and the worker contract.
    settings = [d for d in by_kind.get("ConfigMap", []) if d.get("metadata", {}).get("name") == "keywatch"]
    cm = (settings or [{}])[0].get("data", {})

    def deployment() -> dict[str, Any]:
        return one("Deployment", "keywatch")

    def container() -> dict[str, Any]:
        return deployment()["spec"]["template"]["spec"]["containers"][0]

    def probes() -> None:
        ctr = container()
        ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = ctr[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            _assert(get["path"] == path and port == METRICS_PORT, f"{probe} is {get['path']} on {port}, want {path} on {METRICS_PORT}")

    def grace_exceeds_drain() -> None:
        grace = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        drain = int(cm["KEYWATCH_DRAIN_TIMEOUT_SECS"])
        _assert(grace > drain, f"terminationGracePeriodSeconds {grace} <= KEYWATCH_DRAIN_TIMEOUT_SECS {drain}")

    def config_complete() -> None:
        for key in ("KEYWATCH_QUEUE_URL", "KEYWATCH_FINDINGS_BUS", "KEYWATCH_LEDGER_TABLE", "KEYWATCH_METRICS_ADDR", "AWS_REGION"):
            _assert(cm.get(key), f"ConfigMap lacks {key}")
        _assert(cm["KEYWATCH_METRICS_ADDR"] == f"0.0.0.0:{METRICS_PORT}", "KEYWATCH_METRICS_ADDR must bind 0.0.0.0:9464 in a pod")
        refs = [e["configMapRef"]["name"] for e in container().get("envFrom", []) if "configMapRef" in e]
        _assert(one("ConfigMap", "keywatch")["metadata"]["name"] in refs, "Deployment does not load the ConfigMap")

    def service_account() -> None:
        spec = deployment()["spec"]["template"]["spec"]
        sa = one("ServiceAccount", spec["serviceAccountName"])
        _assert("eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {}), "ServiceAccount lacks the IRSA annotation")

    def non_root() -> None:
        pod = deployment()["spec"]["template"]["spec"]
        ctx = container()["securityContext"]
        _assert(pod["securityContext"].get("runAsNonRoot") is True, "pod runAsNonRoot is not true")
        _assert(ctx.get("allowPrivilegeEscalation") is False and ctx.get("readOnlyRootFilesystem") is True, "container securityContext too loose")
        _assert("resources" in container() and container()["resources"].get("limits"), "container has no resource limits")

    def scaled_object() -> None:
        so = one("ScaledObject")
        _assert(so["spec"]["scaleTargetRef"]["name"] == deployment()["metadata"]["name"], "ScaledObject does not target the Deployment")
        sqs = [t for t in so["spec"]["triggers"] if t["type"] == "aws-sqs-queue"]
        _assert(len(sqs) == 1, "ScaledObject needs exactly one aws-sqs-queue trigger")
        md = sqs[0]["metadata"]
        for key in ("queueURL", "queueLength", "awsRegion"):
            _assert(md.get(key), f"aws-sqs-queue trigger lacks {key}")
        _assert(md["queueLength"].isdigit(), "queueLength must be a whole number in a string")
        _assert(md["queueURL"] == cm["KEYWATCH_QUEUE_URL"], "ScaledObject queueURL differs from KEYWATCH_QUEUE_URL")
        _assert(md["awsRegion"] == cm["AWS_REGION"], "ScaledObject awsRegion differs from AWS_REGION")
        if md.get("identityOwner") != "operator":
            ref = sqs[0].get("authenticationRef", {}).get("name")
            _assert(ref, "trigger needs authenticationRef (or identityOwner: operator)")
            one("TriggerAuthentication", ref)
        # The scaler reads the queue's depth under a role of its own (the central
        # stack's ScalerPolicyArn), never the worker's IRSA role.
        _assert(md.get("identityOwner") != "operator", "the aws-sqs-queue trigger must name a TriggerAuthentication with its own roleArn")
        pod = one("TriggerAuthentication", sqs[0]["authenticationRef"]["name"])["spec"].get("podIdentity", {})
        worker_role = one("ServiceAccount", deployment()["spec"]["template"]["spec"]["serviceAccountName"])["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        _assert(pod.get("identityOwner") != "workload", "the KEDA scaler must not use the worker's role (identityOwner: workload)")
        _assert(pod.get("roleArn") and pod["roleArn"] != worker_role, "the KEDA TriggerAuthentication must name a roleArn of its own, not the worker's")

    def service_selects_pods() -> None:
        svc = one("Service", "keywatch")
        pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
        _assert(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector misses the pods")
        ann = svc["metadata"].get("annotations", {})
        _assert(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(METRICS_PORT), "Service lacks prometheus.io scrape annotations")
        sm = one("ServiceMonitor")
        sel = sm["spec"]["selector"].get("matchLabels", {})
        _assert(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selector misses the Service")
        names = {p["name"] for p in svc["spec"]["ports"]}
        _assert(all(ep.get("port") in names for ep in sm["spec"]["endpoints"]), "ServiceMonitor endpoint port is not a Service port name")

    def exceptions_mounted() -> None:
        env = {e["name"]: e.get("value") for e in container().get("env", [])}
        path = env.get("KEYWATCH_EXCEPTIONS_FILE") or cm.get("KEYWATCH_EXCEPTIONS_FILE")
        _assert(path, "KEYWATCH_EXCEPTIONS_FILE is not set on the container")
        directory, _, key = path.rpartition("/")
        mounts = [m for m in container().get("volumeMounts", []) if m["mountPath"].rstrip("/") == directory]
        _assert(len(mounts) == 1, f"no volume mounted at {directory}, the directory of KEYWATCH_EXCEPTIONS_FILE")
        mount = mounts[0]
        _assert("subPath" not in mount and "subPathExpr" not in mount,
                "exceptions mounted with subPath: ConfigMap updates would never reach the pod")
        _assert(mount.get("readOnly") is True, "exceptions volume is not mounted readOnly")
        volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"].get("volumes", [])}
        source = volumes.get(mount["name"], {}).get("configMap")
        _assert(source, f"volume {mount['name']} is not a ConfigMap volume")
        _assert(not source.get("items"), "exceptions volume projects selected items; mount the whole ConfigMap")
        data = one("ConfigMap", source["name"]).get("data", {})
        _assert(key in data, f"ConfigMap {source['name']} has no key {key}")
        _assert(key.endswith((".yaml", ".yml")), f"{key}: the worker reads .yaml/.yml as YAML")
        doc = yaml.safe_load(data[key])
        entries = (doc or {}).get("exceptions")
        _assert(isinstance(doc, (dict, type(None))) and isinstance(entries, (list, type(None))),
                f"{key}: expected a top-level `exceptions` list")
        fields = {"account", "user", "reason", "owner", "expires"}
        for i, entry in enumerate(entries or []):
            _assert(isinstance(entry, dict) and fields <= set(entry) <= fields | {"approved"},
                    f"{key}: entry {i} needs exactly {sorted(fields)}, and may have approved")
            _assert(not (entry["account"] == "*" and set(str(entry["user"])) == {"*"}),
                    f"{key}: entry {i}: account \"*\" with user \"*\" suppresses every finding")
            _assert(entry["account"] == "*" or (isinstance(entry["account"], str) and entry["account"].isdigit()
                    and len(entry["account"]) == 12), f"{key}: entry {i}: account must be 12 digits (quoted) or \"*\"")
            _assert(str(entry["expires"])[:10].count("-") == 2, f"{key}: entry {i}: expires must be a date")

    def disruption_budget() -> None:
        pdb = one("PodDisruptionBudget", "keywatch")
        pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
        sel = pdb["spec"]["selector"].get("matchLabels", {})
        _assert(sel and all(pod_labels.get(k) == v for k, v in sel.items()), "PodDisruptionBudget selector misses the pods")
        minimum = min([one("ScaledObject")["spec"].get("minReplicaCount", 1), deployment()["spec"].get("replicas", 1)])
        if "minAvailable" in pdb["spec"]:
            avail = pdb["spec"]["minAvailable"]
            _assert(isinstance(avail, int) and avail < minimum,
                    f"minAvailable {avail} at {minimum} replica(s) refuses every eviction: node drains would hang")
        else:
            unavail = pdb["spec"].get("maxUnavailable")
            _assert(unavail not in (0, "0%", None), "maxUnavailable 0 refuses every eviction: node drains would hang")

    def admin_ingress_from_scraper() -> None:
        pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
        policies = [p for p in by_kind.get("NetworkPolicy", [])
                    if all(pod_labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())]
        _assert(policies, "no NetworkPolicy selects the worker pods")
        for pol in policies:
            name = pol["metadata"]["name"]
            _assert("Ingress" in pol["spec"].get("policyTypes", []), f"NetworkPolicy {name} does not restrict ingress")
            for i, rule in enumerate(pol["spec"].get("ingress", [])):
                ports = [p.get("port") for p in rule.get("ports", [])]
                _assert(ports and all(p in (METRICS_PORT, "metrics") for p in ports),
                        f"NetworkPolicy {name} ingress {i}: ports {ports}, want only the admin port {METRICS_PORT}")
                peers = rule.get("from")
                _assert(peers, f"NetworkPolicy {name} ingress {i}: no `from`, so anyone reaches the admin port; name the scraper")
                for peer in peers:
                    _assert("ipBlock" not in peer, f"NetworkPolicy {name} ingress {i}: an ipBlock peer; name the scraper's pods")
                    for sel in ("namespaceSelector", "podSelector"):
                        labels = (peer.get(sel) or {}).get("matchLabels") or {}
                        exprs = (peer.get(sel) or {}).get("matchExpressions") or []
                        _assert(labels or exprs, f"NetworkPolicy {name} ingress {i}: the {sel} of a peer is missing or empty (matches everything)")

    def rules_match_alerts() -> None:
        rule = one("PrometheusRule", "keywatch")
        want = yaml.safe_load(ALERT_RULES.read_text())["groups"]
        got = rule["spec"]["groups"]
        _assert([g["name"] for g in got] == [g["name"] for g in want],
                f"PrometheusRule groups {[g['name'] for g in got]} != {ALERT_RULES.name} groups {[g['name'] for g in want]}")
        for g, w in zip(got, want):
            for r, wr in zip(g["rules"], w["rules"]):
                _assert(r == wr, f"group {g['name']}: rule {r.get('alert') or r.get('record')} differs from {ALERT_RULES.name}")
            _assert(len(g["rules"]) == len(w["rules"]), f"group {g['name']}: {len(g['rules'])} rules, {ALERT_RULES.name} has {len(w['rules'])}")
        _assert(got == want, f"PrometheusRule groups differ from {ALERT_RULES.name}")

    def kustomization() -> None:
        kust = [d for _, d in docs if (d.get("apiVersion"), d.get("kind")) == KUSTOMIZATION]
        _assert(len(kust) == 1, f"expected one Kustomization (kustomization.yaml), found {len(kust)}")
        names = [f for f, d in docs if (d.get("apiVersion"), d.get("kind")) == KUSTOMIZATION]
        _assert(names == ["kustomization.yaml"], f"the Kustomization must be kustomization.yaml, is {names}")
        listed = kust[0]["resources"]
        manifests = sorted({f for f, d in docs if f != "kustomization.yaml"})
        missing = sorted(set(manifests) - set(listed))
        extra = sorted(set(listed) - set(manifests))
        _assert(not missing, f"kustomization.yaml does not list {missing}")
        _assert(not extra, f"kustomization.yaml lists {extra}, which are no manifests here")
        images = {image_name(c["image"]) for d in by_kind.get("Deployment", [])
                  for c in d["spec"]["template"]["spec"]["containers"]}
        for entry in kust[0].get("images", []):
            _assert(entry["name"] in images, f"images entry {entry['name']} matches no container image ({sorted(images)})")
        _assert(kust[0].get("images"), "kustomization.yaml has no images entry for `kustomize edit set image`")

    c.run("probes hit /healthz and /readyz on 9464", probes)
    c.run("terminationGracePeriodSeconds exceeds the drain timeout", grace_exceeds_drain)
    c.run("ConfigMap carries the worker settings and is loaded", config_complete)
    c.run("ServiceAccount exists with the IRSA annotation", service_account)
    c.run("pod runs non-root, read-only, with limits", non_root)
    c.run("ScaledObject scales the Deployment on the worker's queue", scaled_object)
    c.run("Service and ServiceMonitor select the worker pods", service_selects_pods)
    c.run("exceptions ConfigMap is mounted as the directory of KEYWATCH_EXCEPTIONS_FILE", exceptions_mounted)
    c.run("PodDisruptionBudget lets a drain evict a single replica", disruption_budget)
    c.run("NetworkPolicy lets only the scraper reach the admin port", admin_ingress_from_scraper)
    c.run(f"PrometheusRule groups are those of {ALERT_RULES.parent.name}/{ALERT_RULES.name}", rules_match_alerts)
    c.run("kustomization.yaml lists every manifest and the Deployment's image", kustomization)

    print(f"k8s: {c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


def _assert(cond: Any, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
