"""Cancelled time-limit timers leave the event loop's heap (bench/memory.py measures the RSS)."""

from __future__ import annotations

from types import SimpleNamespace

from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from worker import timer_hygiene


def test_cancelled_entries_are_purged_and_live_ones_keep_their_order() -> None:
    # Given a timer holding the soft and hard limits of 1,000 finished tasks and of one running task
    timer = Timer()
    fired: list[str] = []
    finished = [timer.call_after(300 + n % 60, fired.append, ("late",)) for n in range(2000)]
    running = [timer.call_after(1, fired.append, (name,)) for name in ("soft", "hard")]
    for entry in finished:
        timer.cancel(entry)
    assert len(timer) == 2002
    # When the heap is purged
    assert timer_hygiene.purge_cancelled(timer) == 2000
    # Then only the live entries remain, still a heap, and a second purge finds nothing
    assert len(timer) == 2 and timer_hygiene.purge_cancelled(timer) == 0
    assert sorted(entry for _, _, entry in timer._queue) == sorted(running)
    assert timer._queue[0][0] == min(eta for eta, _, _ in timer._queue)


def test_installed_on_the_prefork_hub_only() -> None:
    hub = Hub()
    before = len(hub.timer)
    assert timer_hygiene.install(SimpleNamespace(controller=SimpleNamespace(hub=hub)))
    assert len(hub.timer) == before + 1  # the repeating purge
    assert not timer_hygiene.install(SimpleNamespace(controller=SimpleNamespace(hub=None)))
