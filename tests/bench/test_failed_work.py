"""The failed-work figures' script runs end to end on a small set; no speed is judged here."""

from __future__ import annotations

import redis

from bench.failed_work import measure
from tests.conftest import redis_url


def test_it_measures_a_write_a_filtered_list_and_a_requeue(redis_client: redis.Redis) -> None:
    figures = measure(redis_url(), 300)
    assert figures["write"]["build_cpu_us"] > 0 and figures["write"]["evalsha_wall_us_median"] > 0
    assert figures["list"]["matched"] == 30
    assert figures["requeue"]["requeued"] == 300
    assert redis_client.dbsize() == 0
