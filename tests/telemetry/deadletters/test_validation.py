"""Every way an item can be refused before kombu builds a Message (no broker)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.deadletters.records import Reason
from telemetry.deadletters.validation import judge
from tests.support.messages import PICKLED_ONE, deep_json, envelope, item

LIMIT = 1_048_576


def reason_of(raw: str | bytes) -> Reason | None:
    return judge(raw, LIMIT).reason


def test_a_celery_message_is_accepted_and_parsed() -> None:
    verdict = judge(item(), LIMIT)
    assert verdict.reason is None
    assert verdict.payload is not None and verdict.payload["headers"]["task"] == "briefing_compile"


def test_not_json() -> None:
    assert reason_of(b"hello") is Reason.NOT_JSON
    assert reason_of(b"\xff\xfe\x00") is Reason.NOT_JSON


def test_envelopes_that_are_not_objects_or_lack_properties() -> None:
    assert reason_of("[1, 2, 3]") is Reason.BAD_ENVELOPE
    assert reason_of('"text"') is Reason.BAD_ENVELOPE
    broken = envelope()
    del broken["properties"]
    assert reason_of(json.dumps(broken)) is Reason.BAD_ENVELOPE


def test_deep_json_is_refused_without_recursing_the_worker_to_death() -> None:
    assert reason_of(deep_json(100_000)) is Reason.BAD_ENVELOPE


def test_body_with_invalid_base64_is_a_bad_envelope() -> None:
    bad = envelope()
    bad["body"] = bad["body"][:-2] + "!="
    assert reason_of(json.dumps(bad)) is Reason.BAD_ENVELOPE
    assert reason_of(item(body="abc", encode=False)) is Reason.BAD_ENVELOPE  # bad padding


def test_missing_task_or_id_header() -> None:
    assert reason_of(item(task=None)) is Reason.MISSING_HEADER
    verdict = judge(item(task_id=None), LIMIT)
    assert (verdict.reason, verdict.task) == (Reason.MISSING_HEADER, "briefing_compile")


def test_anything_but_json_content() -> None:
    pickled = item(body=PICKLED_ONE, content_type="application/x-python-serialize")
    assert reason_of(pickled) is Reason.CONTENT_TYPE


def test_bodies_that_are_not_the_task_triple() -> None:
    assert reason_of(item(body=b"not json")) is Reason.BAD_BODY
    assert reason_of(item(body=b"[1, 2]")) is Reason.BAD_BODY
    assert reason_of(item(body=b"[{}, {}, {}]")) is Reason.BAD_BODY
    assert reason_of(item(body=deep_json(100_000).encode())) is Reason.BAD_BODY


def test_other_accepted_types_get_the_envelope_checks_and_kombu_the_body() -> None:
    """An app accepting msgpack: its body is left to kombu, its envelope is not."""
    accept = frozenset({"application/json", "application/x-msgpack"})

    def msgpack(**kwargs: object) -> str:
        return item(content_type="application/x-msgpack", content_encoding="binary", **kwargs)  # type: ignore[arg-type]

    assert judge(msgpack(body=b"\xc1 not msgpack"), LIMIT, accept=accept).payload is not None
    assert judge(msgpack(body=b"\x93\x90\x80\xc0"), LIMIT).reason is Reason.CONTENT_TYPE
    assert judge(msgpack(body="abc", encode=False), LIMIT, accept=accept).reason is (
        Reason.BAD_ENVELOPE
    )
    assert judge(msgpack(task_id=None), LIMIT, accept=accept).reason is Reason.MISSING_HEADER
    assert judge(msgpack(retries="many"), LIMIT, accept=accept).reason is Reason.BAD_ENVELOPE
    # accept_content=None accepts any content type, as Celery does; JSON is still parsed
    pickled = item(body=PICKLED_ONE, content_type="application/x-python-serialize")
    assert judge(pickled, LIMIT, accept=None).payload is not None
    assert judge(item(body=b"[1, 2]"), LIMIT, accept=None).reason is Reason.BAD_BODY


def test_malformed_headers_celery_would_crash_on() -> None:
    assert reason_of(item(timelimit="soon")) is Reason.BAD_ENVELOPE
    assert reason_of(item(retries="many")) is Reason.BAD_ENVELOPE


def test_what_kombu_stores_in_unacked_must_be_routable() -> None:
    """A tag or routing field kombu cannot store would restart the consumer."""
    for section, key, value in [
        ("properties", "delivery_tag", {}),
        ("properties", "delivery_tag", None),
        ("properties", "delivery_info", None),
        ("delivery_info", "exchange", None),
        ("delivery_info", "routing_key", []),
    ]:
        broken = envelope()
        target = (
            broken["properties"]
            if section == "properties"
            else broken["properties"]["delivery_info"]
        )
        target[key] = value
        assert reason_of(json.dumps(broken)) is Reason.BAD_ENVELOPE, (key, value)
        del target[key]
        assert reason_of(json.dumps(broken)) is Reason.BAD_ENVELOPE, key


def test_too_large_is_judged_before_parsing() -> None:
    assert judge(b"x" * 101, 100).reason is Reason.TOO_LARGE
    assert judge(item(), 10).reason is Reason.TOO_LARGE


def test_control_replies_need_no_task_headers() -> None:
    reply = envelope(task=None, task_id=None)
    assert judge(json.dumps(reply), LIMIT, task_message=False).payload is not None
    assert judge(b"[]", LIMIT, task_message=False).reason is Reason.BAD_ENVELOPE


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=2000),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=30,
        ).map(json.dumps),
    )
)
def test_garbage_is_always_judged_never_raised(raw: bytes | str) -> None:
    verdict = judge(raw, LIMIT)
    assert (verdict.payload is None) != (verdict.reason is None)
