#!/usr/bin/env bash
# The test command: format, lint, types, then the whole test suite against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh
.venv/bin/ruff format --check worker telemetry tests bench dashboards
.venv/bin/ruff check worker telemetry tests bench dashboards
.venv/bin/mypy
.venv/bin/lint-imports
started=$(date +%s)
.venv/bin/python -m pytest "$@"
echo "test suite took $(( $(date +%s) - started )) s"
