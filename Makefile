.PHONY: run demo test test-fast test-faults lint bench schema dashboards lock

run:            ## the worker with its telemetry, on local defaults
	scripts/run.sh

demo:           ## the worker plus a mixed workload, then a summary
	scripts/run.sh demo

test:           ## format, lint, types and the whole suite (what CI runs)
	scripts/test.sh

test-fast:      ## unit tests only: no worker subprocesses
	scripts/test.sh -m "not integration and not faults"

test-faults:    ## the slow fault-injection tests alone
	scripts/test.sh -m faults

schema:         ## create the database schema (idempotent)
	scripts/bootstrap.sh && .venv/bin/python -m worker.db.schema

bench:          ## drain-rate benchmark, side by side
	scripts/bootstrap.sh && .venv/bin/python -m bench

dashboards:     ## regenerate rules, dashboards, PrometheusRule and ScaledObject from dashboards/config.yaml
	scripts/bootstrap.sh && .venv/bin/python -m dashboards.generate

lock:           ## refresh requirements/lock.txt (pinned, hashed) from pyproject.toml
	scripts/lock.sh
