"""Failed work from a shell: dead letters and exhausted tasks, for any app.

    python -m telemetry.failed -A yourmodule list [filters] [--limit N] [--cursor C] [--json]
    python -m telemetry.failed -A yourmodule show ID
    python -m telemetry.failed -A yourmodule groups [filters] [--json]
    python -m telemetry.failed -A yourmodule requeue (ID... | filters | --all) [--dry-run] [--force]
    python -m telemetry.failed -A yourmodule delete (ID... | filters | --all) [--dry-run]

Filters are the operator API's query keys: ``--kind``, ``--queue``, ``--task``,
``--reason``, ``--exception``, ``--since``, ``--until`` (RFC 3339) and ``--q``.
``-A`` names the app as ``celery -A`` does; ``-Q`` adds queues a requeue may
go to besides the app's own. The CLI calls the functions the API calls
(``telemetry.failed.operations``), and audits its writes the same way, as
``cli:<user>@<host>``. A bad input is one line and exit status 2; a record not
found, exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from typing import Any

from celery import Celery

from telemetry.broker import app_queues, redis_for
from telemetry.failed.locate import key_prefix
from telemetry.failed.operations import FailedWork, Selection
from telemetry.failed.query import FILTER_KEYS, BadInput, Query
from telemetry.ops.audit import AuditLog, audit_key
from telemetry.settings import ConfigError, TelemetrySettings, read_settings


def _filter_args(command: argparse.ArgumentParser) -> None:
    for key in FILTER_KEYS:
        command.add_argument(f"--{key}", help=f"the API's {key!r} key")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m telemetry.failed", description=__doc__.split("\n\n")[0]
    )
    root.add_argument("-A", "--app", required=True, help="the app, as celery -A takes it")
    root.add_argument(
        "-Q", "--queues", default="", help="queues a requeue may go to, besides the app's"
    )
    commands = root.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="records, newest first")
    _filter_args(listing)
    listing.add_argument("--limit", default="20")
    listing.add_argument("--cursor")
    listing.add_argument("--json", action="store_true", help="the API's JSON answer")
    commands.add_parser("show", help="one record, whole").add_argument("id")
    groups = commands.add_parser("groups", help="counts by kind, queue, task and exception")
    _filter_args(groups)
    groups.add_argument("--json", action="store_true")
    for name in ("requeue", "delete"):
        action = commands.add_parser(name, help=f"{name} records by id or by filter")
        action.add_argument("ids", nargs="*", metavar="ID")
        _filter_args(action)
        action.add_argument(
            "--all", action="store_true", help="every record, when no filter is given"
        )
        action.add_argument("--dry-run", action="store_true", help="count, change nothing")
        if name == "requeue":
            action.add_argument("--force", action="store_true", help="canvas members too")
    return root


def _given(args: argparse.Namespace, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}


def _selection(args: argparse.Namespace) -> Selection:
    given = _given(args, FILTER_KEYS)
    if args.ids and (given or args.all):
        raise BadInput("ids", "give ids or a filter, not both")
    if args.ids:
        return Selection(ids=tuple(args.ids))
    if not given and not args.all:
        raise BadInput("filter", "give ids, a filter, or --all for every record")
    return Selection(query=Query.parse(given, default_limit=None))


def _print_listing(answer: dict[str, Any]) -> None:
    print(f"{answer['count']} record(s) match")
    for item in answer["items"]:
        what = item["exception"] or item["reason"]
        print(
            f"{item['failed_at']}  {item['kind']:<11} {item['queue']:<12} "
            f"{item['task'] or 'unknown'}  {what}  {item['id']}  task_id={item['task_id'] or '-'}"
        )
    if answer["next"]:
        print(f"more: --cursor {answer['next']}")


def run(work: FailedWork, audit: AuditLog, args: argparse.Namespace) -> int:
    if args.command == "list":
        answer = work.listing(Query.parse(_given(args, (*FILTER_KEYS, "limit", "cursor"))))
        print(json.dumps(answer, indent=2)) if args.json else _print_listing(answer)
        return 0
    if args.command == "show":
        shown = work.show(args.id)
        if shown is None:
            print(f"no record {args.id}", file=sys.stderr)
            return 1
        print(json.dumps(shown, indent=2))
        return 0
    if args.command == "groups":
        answer = work.groups(Query.parse(_given(args, FILTER_KEYS)).filter)
        if args.json:
            print(json.dumps(answer, indent=2))
        else:
            for group in answer["groups"]:
                print(
                    f"{group['count']:>7}  {group['kind']:<11} {group['queue']:<12} "
                    f"{group['task'] or 'unknown'}  {group['exception'] or '-'}  newest {group['newest']}"
                )
        return 0
    selection = _selection(args)
    if args.command == "requeue":
        result = work.requeue(selection, dry_run=args.dry_run, force=args.force)
    else:
        result = work.delete(selection, dry_run=args.dry_run)
    answer = result.as_json()
    audit.record(
        args.command, selection.describe(), answer, client=_cli_client(), dry_run=args.dry_run
    )
    print(json.dumps(answer))
    return 0


def _cli_client() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = read_settings(TelemetrySettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from celery.app.utils import find_app

    app: Celery = find_app(args.app)
    extra = {queue.strip() for queue in args.queues.split(",") if queue.strip()}
    work = FailedWork.for_app(app, settings, app_queues(app) | extra)
    with app.connection_for_read() as connection:
        audit = AuditLog(
            redis_for(connection), audit_key(key_prefix(connection.transport_options or {}))
        )
    try:
        return run(work, audit, args)
    except BadInput as exc:
        print(f"python -m telemetry.failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
