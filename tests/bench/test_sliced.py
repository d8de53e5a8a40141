"""Sliced drain sessions: turns, staging and a short real round."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench.drain import STAGING, Variant
from bench.redis_server import PrivateRedis
from bench.sliced import SlicedSession, slice_sizes
from bench.tasks import SHIFT_OBJECT_BYTES, SHIFT_OBJECTS, shift_heap

OFF = {"TELEMETRY_ENABLED": "false"}


def test_turns_cover_every_message_once() -> None:
    assert slice_sizes(10_000, 500) == [500] * 20
    assert slice_sizes(1_200, 500) == [500, 500, 200]
    assert slice_sizes(200, 500) == [200]


@pytest.mark.integration
def test_a_round_drains_every_slice_in_every_variant(tmp_path: Path) -> None:
    """Given two variants and 60 messages in turns of 25, when a round runs, then the
    turns hold 60 distinct messages and each variant drained all of them."""
    variants = (Variant("off", OFF), Variant("off_aa", OFF))
    with PrivateRedis() as server:
        session = SlicedSession(server, variants, "bench_noop", 60, tmp_path, slice_size=25)
        client = server.client()
        ids: list[str] = []
        for dump in session.slices:
            client.restore(STAGING, 0, dump, replace=True)
            ids += [json.loads(m)["headers"]["id"] for m in client.lrange(STAGING, 0, -1)]
        client.delete(STAGING)
        assert len(ids) == len(set(ids)) == 60
        runs = session.round(random.Random(1))
    assert set(runs) == {"off", "off_aa"}
    assert all(run.tasks == 60 and run.seconds > 0 and run.cpu_seconds > 0 for run in runs.values())


@pytest.mark.integration
def test_a_round_whose_tasks_do_not_succeed_is_refused(tmp_path: Path) -> None:
    """Given messages for a task no worker knows, when a round drains them (the worker
    dead-letters them quickly), then the round is refused instead of timed."""
    with PrivateRedis() as server:
        session = SlicedSession(server, (Variant("off", OFF),), "bench_unknown", 10, tmp_path, 10)
        with pytest.raises(RuntimeError, match="off: 0 of 10 tasks succeeded"):
            session.round(random.Random(1))


def test_heap_shifts_follow_their_seed() -> None:
    """Given seeds, when the heap shift is drawn, then the same seed gives the same
    objects, different seeds give different ones, and no seed leaves the heap alone."""

    def sizes(seed: str | None) -> list[int]:
        return [len(item) for item in shift_heap(seed)]

    assert sizes("0.25") == sizes("0.25")
    drawn = [sizes(str(seed)) for seed in range(20)]
    assert len({tuple(d) for d in drawn}) == 20
    assert all(len(d) < SHIFT_OBJECTS and max(d, default=0) < SHIFT_OBJECT_BYTES for d in drawn)
    assert shift_heap(None) == [] and shift_heap("") == []
