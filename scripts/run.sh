#!/usr/bin/env bash
# The main command: set up, then run the worker with its telemetry on local defaults.
#   scripts/run.sh          # the worker, all four queues, prefork concurrency 2; beside it beat
#                           # (/metrics on 9466) and the broker exporter (broker state on :9465,
#                           # the operator API on OPS_HOST:OPS_PORT, 127.0.0.1:9467, read-only
#                           # without OPS_TOKEN, and its page, http://127.0.0.1:9467/failed);
#                           # both stop when the worker exits
#   scripts/run.sh demo     # the same, plus a mixed workload on every queue and a summary,
#                           # then the failed-work page served until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export REDIS_URL=${REDIS_URL:-redis://localhost:6379/0}
PRIVATE_REDIS_PORT=${PRIVATE_REDIS_PORT:-6390}

if ! .venv/bin/python -m worker.ping >/dev/null 2>&1; then
  if [ "$REDIS_URL" = "redis://localhost:6379/0" ] && command -v redis-server >/dev/null; then
    mkdir -p .run
    echo "run: no Redis at $REDIS_URL; starting a private redis-server on port $PRIVATE_REDIS_PORT (.run/)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$PRIVATE_REDIS_PORT" --dir "$PWD/.run" \
      --appendonly yes --maxmemory-policy noeviction --logfile "$PWD/.run/redis.log" --pidfile "$PWD/.run/redis.pid"
    export REDIS_URL="redis://localhost:$PRIVATE_REDIS_PORT/0"
    for _ in $(seq 50); do .venv/bin/python -m worker.ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  .venv/bin/python -m worker.ping  # says exactly what is wrong and how to fix it
fi

.venv/bin/python -m worker.db.schema
if [ "${1:-}" = "demo" ]; then
  exec .venv/bin/python -m worker.demo
fi
mkdir -p .run
.venv/bin/python -m telemetry.broker_exporter -A worker &
exporter=$!
.venv/bin/celery -A worker beat --schedule .run/celerybeat-schedule --loglevel INFO &
beat=$!
trap 'kill -TERM "$beat" "$exporter" 2>/dev/null || true; wait "$beat" "$exporter" 2>/dev/null || true' EXIT
.venv/bin/celery -A worker worker -Q agents,briefings,scraping,default -c "${CONCURRENCY:-2}" &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null || true' TERM INT
status=0
wait "$worker" || status=$?
# A signal interrupts the wait: wait again for the worker's warm shutdown.
while kill -0 "$worker" 2>/dev/null; do wait "$worker" || status=$?; done
exit "$status"
