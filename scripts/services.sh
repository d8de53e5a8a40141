#!/usr/bin/env bash
# Makes sure the local Redis (6379), PostgreSQL (5432, database `test`) and RabbitMQ (5672, for
# the test of a broker that is not Redis) the tests use are up.
# Starts them when installed but stopped; says exactly what is missing otherwise.
set -uo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
postgres_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || { echo "services: Redis is not reachable on 127.0.0.1:6379 and could not be started (install redis-server)"; exit 1; }
fi

if ! postgres_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 100); do postgres_up && break; sleep 0.1; done
  fi
  postgres_up || { echo "services: PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started (install postgresql)"; exit 1; }
fi

if ! psql -h 127.0.0.1 -U postgres -d test -qtAc 'select 1' >/dev/null 2>&1; then
  echo "services: creating database test"
  psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE test' >/dev/null \
    || { echo "services: cannot reach database test as user postgres (trust auth expected on 127.0.0.1)"; exit 1; }
fi
if ! amqp_up; then
  if command -v rabbitmq-server >/dev/null; then
    echo "services: starting rabbitmq-server"
    if id rabbitmq >/dev/null 2>&1; then
      runuser -u rabbitmq -- rabbitmq-server -detached
    else
      rabbitmq-server -detached
    fi
    for _ in $(seq 600); do amqp_up && break; sleep 0.1; done
  fi
  amqp_up || { echo "services: RabbitMQ is not reachable on 127.0.0.1:5672 and could not be started (install rabbitmq-server)"; exit 1; }
fi
echo "services: Redis, PostgreSQL and RabbitMQ are up"
