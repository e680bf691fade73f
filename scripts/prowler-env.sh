#!/usr/bin/env bash
# Creates (or refreshes) the venv at .venv-prowler with the Prowler version
# that benches/scan_vs_prowler.py compares keywatch with
# (scripts/requirements-prowler.txt). Its own venv: Prowler pins boto3,
# botocore and many more of its own. Idempotent; a first install takes
# several minutes. Prints nothing on success but the venv path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv-prowler"
req="$root/scripts/requirements-prowler.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$stamp"
fi
echo "$venv"
