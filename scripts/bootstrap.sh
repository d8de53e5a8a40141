#!/usr/bin/env bash
# Creates .venv and installs the locked dependencies (requirements/lock.txt, with
# hashes, no resolver: any pip from 23.x on), then both distributions of this
# repository from the checkout, editable: jobpilot-telemetry (packages/jobpilot-telemetry)
# and jobpilot-worker (.). A no-op when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ requirements/lock.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
  || [ packages/jobpilot-telemetry/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/lock.txt
  .venv/bin/python -m pip install --quiet --no-deps -e ./packages/jobpilot-telemetry -e .
  touch "$stamp"
fi
