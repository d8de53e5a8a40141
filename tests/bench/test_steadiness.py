"""The CPU-speed check that brackets every drain session."""

from __future__ import annotations

import os

import pytest

from bench.steadiness import STEADY_SPREAD, describe, measure, summarize


def test_a_machine_whose_cpus_change_speed_is_unsteady() -> None:
    # One CPU alternates between a fast and a slow speed, as on a VM with a busy neighbour
    steady_cpu = [0.050, 0.051, 0.049, 0.050, 0.050]
    switching_cpu = [0.050, 0.085, 0.049, 0.086, 0.050]
    result = summarize({0: steady_cpu, 1: switching_cpu})
    assert result["spread"] > STEADY_SPREAD and not result["steady"]
    assert [row["cpu"] for row in result["cpus"]] == [0, 1]
    assert result["cpus"][1]["p90_ms"] == pytest.approx(86.0)
    assert result["cpus"][1]["p10_ms"] == pytest.approx(49.0)
    assert "UNSTEADY" in describe(result)


def test_a_machine_of_steady_cpus_is_steady() -> None:
    result = summarize({0: [0.050, 0.051, 0.052], 1: [0.049, 0.050, 0.050]})
    assert result["steady"] and result["spread"] < STEADY_SPREAD
    assert result["samples"] == 3
    assert "steady" in describe(result) and "UNSTEADY" not in describe(result)


def test_measuring_times_every_cpu_and_gives_the_process_its_cpus_back() -> None:
    allowed = os.sched_getaffinity(0)
    result = measure(samples=2, iterations=10_000)
    assert os.sched_getaffinity(0) == allowed
    assert sorted(row["cpu"] for row in result["cpus"]) == sorted(allowed)
    assert all(row["p90_ms"] >= row["median_ms"] >= row["p10_ms"] > 0 for row in result["cpus"])
