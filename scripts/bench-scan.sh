#!/usr/bin/env bash
# `keywatch scan` beside Prowler's iam_user_two_active_access_key check on
# one moto server (benches/scan_vs_prowler.py): 1,000 IAM users in two
# accounts (the own one and a member reached by AssumeRole), wall time, CPU,
# peak RSS, AWS requests per user, and whether both find the same failing
# users. Makes the Python venv (moto) and Prowler's own venv (.venv-prowler,
# from scripts/requirements-prowler.txt: Prowler pins boto3, botocore and
# many more of its own; a first install takes several minutes), builds the
# release binary, then hands over the arguments. Takes ~15–25
# minutes at full size (moto is slow, and Prowler's IAM set-up lists far more
# than the check needs).
# Usage: scripts/bench-scan.sh [scan_vs_prowler.py options, e.g. --users-per-account 100]
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
echo "==> Prowler's venv (.venv-prowler)" >&2
prowler_venv=$("$here/venv.sh" .venv-prowler scripts/requirements-prowler.txt)
exec "$here/bench-moto.sh" benches/scan_vs_prowler.py --prowler "$prowler_venv/bin/prowler" "$@"
