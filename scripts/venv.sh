#!/usr/bin/env bash
# Creates (or refreshes) a Python venv with the pinned requirements of one of
# the project's tools, for every venv the scripts use:
#   .venv          scripts/requirements.txt          (scripts/python-env.sh)
#   .venv-lint     scripts/requirements-lint.txt     (scripts/check-infra.sh)
#   .venv-prowler  scripts/requirements-prowler.txt  (scripts/bench-scan.sh)
# Idempotent: pip runs only when the requirements file or the venv's
# interpreter changed since the last install (their hash is stamped in
# DIR/.requirements.sha256). A new venv is made with $PYTHON if set, else
# python3.11 (the version the pins are tested with), else python3.
# Prints nothing on stdout but the venv's absolute path; progress and pip's
# output go to stderr.
# Usage: scripts/venv.sh DIR REQUIREMENTS   (relative paths: from the repository root)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: scripts/venv.sh DIR REQUIREMENTS"
venv=${1:?$usage}
req=${2:?$usage}
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
case "$req" in /*) ;; *) req="$root/$req" ;; esac
[ -r "$req" ] || { echo "venv.sh: no requirements file $req" >&2; exit 1; }
stamp="$venv/.requirements.sha256"

if [ ! -x "$venv/bin/python" ]; then
  py=""
  for candidate in "${PYTHON:-}" python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
      py=$candidate
      break
    fi
  done
  [ -n "$py" ] || { echo "venv.sh: no python3.11 or python3 on PATH" >&2; exit 1; }
  echo "venv.sh: creating $venv with $("$py" --version 2>&1)" >&2
  "$py" -m venv "$venv" >&2
fi
want=$( { cat "$req"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "venv.sh: installing $req into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" >"$stamp"
fi
echo "$venv"
