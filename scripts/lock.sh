#!/usr/bin/env bash
# Refreshes requirements/lock.txt from pyproject.toml (`make lock`): every
# dependency, the grpc and test extras included, pinned with hashes, so that
# `pip install --require-hashes --no-deps -r requirements/lock.txt` needs no resolver.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=.venv-lock
if [ ! -x "$tools/bin/pip-compile" ]; then
  "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "pip-tools==7.7.0"
fi
"$tools/bin/pip-compile" --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links --extra grpc --extra test \
  --output-file requirements/lock.txt pyproject.toml
