"""Python shared by the project's scripts, benchmarks and checks.

- cloudtrail: CloudTrail records of the IAM key calls and their EventBridge
  envelopes, from tests/fixtures/cloudtrail_template.json (standard library)
- emulator:   the moto server on a free loopback port, keywatch's pipeline
  on it, its request recording; as a script, a command wrapped in a private
  emulator (needs boto3: the venv of scripts/python-env.sh)
- bench:      what the moto benchmarks measure with (/proc accounting, the
  floor worker, percentiles)
- checks:     named checks that all run, failures counted (infra/check_k8s.py,
  infra/local_deploy.py --verify; standard library)
- markdown:   GitHub's heading anchors, for the link and runbook checks
  (standard library)

Importers put scripts/ on sys.path (a script in scripts/ has it already).
"""
