#!/usr/bin/env bash
# Refreshes requirements/lock.txt from both distributions' pyproject.toml
# (`make lock`): every dependency of jobpilot-worker and jobpilot-telemetry, all
# their extras included, pinned with hashes, so that
# `pip install --require-hashes --no-deps -r requirements/lock.txt` needs no resolver.
#
#   scripts/lock.sh                 # keep today's pins; add and drop what the pyprojects changed
#   scripts/lock.sh --upgrade       # every pin to the newest release the bounds allow
#   scripts/lock.sh -P celery       # that one package only (any pip-compile option is passed on)
#
# jobpilot-telemetry is on no index: it is built from packages/jobpilot-telemetry
# into a local folder that pip-compile searches, and left out of the lock
# (bootstrap installs it from the checkout after the lock).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=.venv-lock
if [ ! -x "$tools/bin/pip-compile" ]; then
  "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "pip-tools==7.7.0"
fi
local_wheels=$tools/wheels
# setuptools packs whatever its build folder holds: a module deleted since would come along.
rm -rf "$local_wheels" packages/jobpilot-telemetry/build
"$tools/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$local_wheels" ./packages/jobpilot-telemetry
"$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras --all-extras \
  --no-emit-index-url --no-emit-find-links --find-links "$local_wheels" \
  --unsafe-package jobpilot-telemetry \
  --output-file requirements/lock.txt "$@" packages/jobpilot-telemetry/pyproject.toml pyproject.toml
# pip-compile closes with a warning that jobpilot-telemetry is unpinned: say why instead.
"$tools/bin/python" - <<'EOF'
from pathlib import Path

lock = Path("requirements/lock.txt")
pinned = lock.read_text().split("\n# WARNING: The following packages were not pinned")[0]
lock.write_text(
    pinned.rstrip("\n")
    + "\n\n# jobpilot-telemetry is not pinned here: it is built from packages/jobpilot-telemetry\n"
    + "# in this repository, and scripts/bootstrap.sh installs it after this file.\n"
)
EOF
