"""Inspect and replay the dead-letter list.

    python -m telemetry.deadletters -A yourmodule list [--start N] [--limit N]
    python -m telemetry.deadletters -A yourmodule show INDEX
    python -m telemetry.deadletters -A yourmodule requeue INDEX
    python -m telemetry.deadletters -A yourmodule purge --yes

``-A`` names the app as ``celery -A`` does; the app's broker and key prefix say
where the list is. The limits come from the telemetry's variables
(``MAX_MESSAGE_BYTES``, ``DEADLETTER_MAX``, ``DEADLETTER_MAX_BYTES``); a bad one
is one ``settings:`` line and exit status 2.

INDEX 0 is the newest record. ``requeue`` puts a record's message back on its
queue only when its envelope passes the same validation the worker applies,
and says why otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from celery import Celery

from telemetry.deadletters.policy import PoisonPolicy
from telemetry.deadletters.records import DeadLetter
from telemetry.deadletters.validation import judge
from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.settings import ConfigError, TelemetrySettings, read_settings


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_list(writer: DeadLetterWriter, args: argparse.Namespace) -> int:
    store = writer.store
    print(f"{store.size()} record(s) in {store.key}")
    for index, record in store.records(args.start, args.limit):
        print(
            f"{index:>6}  {_when(record.received_at)}  {record.queue:<12} {record.reason:<15} "
            f"{record.task or 'unknown'}  {record.id or '-'}  {len(record.raw)} bytes"
        )
    return 0


def _record_at(writer: DeadLetterWriter, index: int) -> tuple[bytes, DeadLetter] | None:
    stored = writer.store.raw_at(index)
    if stored is None:
        print(f"no record at index {index}", file=sys.stderr)
        return None
    return stored, DeadLetter.from_json(stored)


def cmd_show(writer: DeadLetterWriter, args: argparse.Namespace) -> int:
    found = _record_at(writer, args.index)
    if found is None:
        return 1
    print(json.dumps(json.loads(found[0]), indent=2))
    return 0


def cmd_requeue(
    writer: DeadLetterWriter, args: argparse.Namespace, app: Celery, policy: PoisonPolicy
) -> int:
    found = _record_at(writer, args.index)
    if found is None:
        return 1
    stored, record = found
    verdict = judge(record.raw_bytes(), policy.max_message_bytes, accept=policy.accept)
    if verdict.payload is None:
        print(
            f"cannot requeue record {args.index}: its message is {verdict.reason}", file=sys.stderr
        )
        return 1
    if record.queue not in _known_queues(app):
        print(
            f"cannot requeue record {args.index}: unknown queue {record.queue!r}", file=sys.stderr
        )
        return 1
    if not writer.store.remove(stored):
        print(f"record {args.index} changed while requeueing; list again", file=sys.stderr)
        return 1
    with app.connection_for_write() as connection:
        # kombu's own put: the same priority sub-list and key prefix a publish uses.
        connection.default_channel._put(record.queue, verdict.payload)
    print(f"requeued {record.task}[{record.id}] to {record.queue}")
    return 0


def _known_queues(app: Celery) -> set[str]:
    queues: Any = app.conf.task_queues or ()
    return {queue.name for queue in queues}


def cmd_purge(writer: DeadLetterWriter, args: argparse.Namespace) -> int:
    if not args.yes:
        print("purge deletes every record; run again with --yes", file=sys.stderr)
        return 1
    print(f"purged {writer.store.purge()} record(s)")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m telemetry.deadletters", description=__doc__.split("\n\n")[0]
    )
    root.add_argument("-A", "--app", required=True, help="the app, as celery -A takes it")
    commands = root.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="newest records first")
    listing.add_argument("--start", type=int, default=0)
    listing.add_argument("--limit", type=int, default=20)
    commands.add_parser("show", help="one record in full").add_argument("index", type=int)
    commands.add_parser("requeue", help="put a record's message back").add_argument(
        "index", type=int
    )
    commands.add_parser("purge", help="delete every record").add_argument(
        "--yes", action="store_true"
    )
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from celery.app.utils import find_app

    app = find_app(args.app)
    try:
        policy = PoisonPolicy.of(app.conf.accept_content, read_settings(TelemetrySettings))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    writer = DeadLetterWriter.for_app(app, policy)
    if args.command == "list":
        return cmd_list(writer, args)
    if args.command == "show":
        return cmd_show(writer, args)
    if args.command == "requeue":
        return cmd_requeue(writer, args, app, policy)
    return cmd_purge(writer, args)


if __name__ == "__main__":
    raise SystemExit(main())
