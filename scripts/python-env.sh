#!/usr/bin/env bash
# Creates (or refreshes) the project's Python venv at .venv with the local AWS
# emulator (moto server), boto3, and the OCSF schemas with a JSON Schema
# validator (tests/ocsf_check.py), pinned in scripts/requirements.txt.
# Idempotent (scripts/venv.sh): re-running is cheap when the requirements have
# not changed. Prints nothing on stdout but the venv path.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/venv.sh" .venv scripts/requirements.txt
