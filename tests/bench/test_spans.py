"""The in-process span-cost suite: what each handler set records and what encoding sees."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from bench import spans


def recorded(factory_name: str, tasks: int) -> list[ReadableSpan]:
    """The spans ``tasks`` executions send under a handler set, as the export process reads them."""
    sent = spans.recorded_spans(spans.FACTORIES[factory_name])
    return spans.decoded(sent)[:tasks]


def test_lean_handlers_make_one_consumer_span_per_task_under_the_remote_parent() -> None:
    finished = recorded("lean", spans.ENCODE_BATCH)
    assert len(finished) == spans.ENCODE_BATCH
    assert {span.name for span in finished} == {"run/bench_noop"}
    assert {span.context.trace_id for span in finished} == {int(spans.TRACEPARENT[3:35], 16)}
    assert len({span.attributes["messaging.message.id"] for span in finished}) == len(finished)


def test_disconnected_handlers_send_nothing() -> None:
    handlers = spans.lean_set(TracerProvider())
    handlers.connect()
    spans.run_tasks(1)
    handlers.disconnect()
    assert len(handlers.sent()) == 1
    spans.run_tasks(2)
    assert handlers.sent() == []


def test_upstream_handlers_make_their_own_run_span() -> None:
    pytest.importorskip("opentelemetry.instrumentation.celery")
    finished = recorded("upstream", 2)
    assert [span.name for span in finished] == ["run/bench_noop"] * 2


def test_the_discarding_exporter_encodes_every_span_it_is_given() -> None:
    exporter = spans.EncodingDiscarder()
    sample = recorded("lean", spans.ENCODE_BATCH)
    assert exporter.export(sample).name == "SUCCESS"
    assert exporter.spans == spans.ENCODE_BATCH


def test_measure_reports_every_installed_set_against_the_floor() -> None:
    result = spans.measure(rounds=1, tasks_per_round=40)
    rows = {row["handlers"]: row for row in result["sets"]}
    assert {"none", "lean"} <= set(rows)
    assert rows["none"]["spans_per_task"] == 0 and rows["lean"]["spans_per_task"] == 1
    assert rows["none"]["added_us_per_task"] == 0 and rows["none"]["encode_us_per_span"] == 0
    assert rows["lean"]["encode_us_per_span"] > 0
    assert rows["lean"]["encoded_in"] == "export process"
    # The fixed six attributes and the outcome, and no more
    assert rows["lean"]["attributes_per_span"] == 7
    assert ("upstream" in rows) is result["upstream_installed"]
    if result["upstream_installed"]:
        assert rows["upstream"]["encoded_in"] == "pool process"
