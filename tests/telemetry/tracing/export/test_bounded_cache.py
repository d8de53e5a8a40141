"""A cache of the span hop starts over when full."""

from __future__ import annotations

from telemetry.bounded_cache import remember


def test_a_full_cache_starts_over_with_the_new_entry() -> None:
    cache: dict[str, int] = {}
    assert remember(cache, "a", 1, limit=2) == 1
    remember(cache, "b", 2, limit=2)
    assert cache == {"a": 1, "b": 2}
    assert remember(cache, "c", 3, limit=2) == 3
    assert cache == {"c": 3}
