"""The drain suites' judgement of a session: the A/A control and the musts of issues 40, 35 and 36."""

from __future__ import annotations

import pytest

from bench.verdict import session_counts, verdict


def row(
    variant: str, low: float, high: float, median: float = 1.0, cpu: float = 1.0
) -> dict[str, object]:
    return {
        "variant": variant,
        "ratio_ci95": [low, high],
        "ratio_median": median,
        "cpu_ratio_median": cpu,
    }


@pytest.mark.parametrize(
    ("low", "high", "counts"),
    [
        (0.985, 1.012, True),
        (0.98, 1.02, True),
        (0.973, 1.031, False),  # contains 1.0 but wider than ±0.02
        (1.001, 1.015, False),  # narrow but misses 1.0
        (0.95, 0.99, False),
    ],
)
def test_session_counts_only_when_the_control_interval_is_narrow_and_holds_one(
    low: float, high: float, counts: bool
) -> None:
    rows = [row("off", 1.0, 1.0), row("off_aa", low, high)]
    assert session_counts(rows, "off_aa") is counts


def test_session_without_its_control_is_not_judged() -> None:
    assert session_counts([row("off", 1.0, 1.0)], "off_aa") is None


@pytest.mark.parametrize(("high", "met"), [(0.969, True), (0.9689, False), (1.01, True)])
def test_the_metrics_must_is_met_when_its_interval_reaches_its_last_reading(
    high: float, met: bool
) -> None:
    rows = [row("off", 1.0, 1.0), row("metrics", 0.95, high, median=0.96)]
    targets = verdict("bench_noop", rows, "off_aa")["targets"]
    assert targets == {"metrics": {"statistic": "upper_end", "least": 0.969, "met": met}}


@pytest.mark.parametrize(
    ("task", "median", "cpu", "met"),
    [
        ("bench_noop", 0.95, 1.10, True),
        ("bench_noop", 0.9499, 1.0, False),
        ("bench_noop", 0.99, 1.1001, False),  # fast enough, but at too much CPU
        ("bench_cpu", 0.96, 1.05, True),
        ("bench_cpu", 0.9599, 1.0, False),
        ("bench_cpu", 0.97, 1.051, False),
    ],
)
def test_everything_on_must_reach_its_median_within_its_cpu(
    task: str, median: float, cpu: float, met: bool
) -> None:
    # A lower end far below the median does not decide it
    rows = [row("off", 1.0, 1.0), row("all_on", 0.90, 0.99, median=median, cpu=cpu)]
    [target] = verdict(task, rows, "off_aa")["targets"].values()
    assert (target["statistic"], target["met"]) == ("median", met)
    assert (target["least"], target["cpu_most"]) == (
        (0.95, 1.10) if task == "bench_noop" else (0.96, 1.05)
    )


@pytest.mark.parametrize(("high", "met"), [(0.99, True), (0.9899, False), (1.02, True)])
def test_the_otlp_must_is_met_when_the_interval_reaches_099(high: float, met: bool) -> None:
    # Given metrics over OTLP against metrics without, on either task: the median and the
    # lower end do not decide it, the upper end does
    for task in ("bench_noop", "bench_cpu"):
        rows = [row("metrics_sdk", 1.0, 1.0), row("metrics_otlp", 0.95, high, median=0.97)]
        targets = verdict(task, rows, "metrics_sdk_aa")["targets"]
        assert targets == {"metrics_otlp": {"statistic": "upper_end", "least": 0.99, "met": met}}


def test_a_must_is_judged_only_in_its_own_suite() -> None:
    # metrics beside the OTLP suite's baseline is not held to its must against off
    rows = [row("metrics_sdk", 1.0, 1.0), row("metrics", 0.5, 0.6)]
    assert verdict("bench_noop", rows, "metrics_sdk_aa")["targets"] == {}


def test_variants_without_a_must_are_not_judged() -> None:
    rows = [row("all_on", 0.5, 0.6), row("events", 0.5, 0.6), row("metrics", 0.5, 0.6)]
    assert verdict("bench_cpu", rows, "off_aa")["targets"].keys() == {"all_on"}


@pytest.mark.parametrize(("high", "met"), [(0.98, True), (0.9799, False), (1.01, True)])
def test_reliable_fetch_costs_at_most_2_percent(high: float, met: bool) -> None:
    """In the fetch suite (baseline: today's fetch), reliable fetch's interval must
    include 0.98 or more; the same variant name in another suite is not judged."""
    rows = [row("off_stockfetch", 1.0, 1.0), row("off", 0.95, high, median=0.97)]
    targets = verdict("bench_noop", rows, "off_stockfetch_aa")["targets"]
    assert targets == {"off": {"statistic": "upper_end", "least": 0.98, "met": met}}
    assert verdict("bench_noop", rows, "off_aa")["targets"] == {}


def test_the_fetch_suite_runs_kombu_s_brpop_beside_reliable_fetch() -> None:
    from bench.__main__ import CONTROLS, DRAIN_SUITES, fetch_variants

    baseline, _ = DRAIN_SUITES["fetch"]
    envs = {variant.name: variant.env for variant in fetch_variants()}
    assert baseline == "off_stockfetch" and CONTROLS["fetch"] in envs
    assert envs["off_stockfetch"] == {**envs["off"], "BROKER_RELIABLE_FETCH": "false"}
    assert "BROKER_RELIABLE_FETCH" not in envs["off"]  # reliable fetch is the default
