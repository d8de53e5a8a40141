"""``python -m bench [--suite drain|hammer] [--n N] [--pairs P] [--tasks ...]``: the drain table.

``drain`` (the default) compares telemetry variants against "off"; ``hammer``
compares a metrics-on worker whose /metrics is scraped 50 times a second while
it drains against the same worker unscraped (with an A/A control). Writes
bench/results/<suite>.json and prints one table. ``--smoke`` is CI's run:
N=200, one pair, no speed judgement, only that the harness works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

from bench.drain import Drainer, Variant, default_workdir, interleaved, summarize
from bench.sink import DiscardingSink

RESULTS = Path(__file__).with_name("results") / "latest.json"


def variants(sink: DiscardingSink) -> tuple[Variant, ...]:
    """off is the baseline; off_aa the A/A control; events the event-based anchor."""
    return (
        Variant("off", {"TELEMETRY_ENABLED": "false"}),
        Variant("off_aa", {"TELEMETRY_ENABLED": "false"}),
        Variant(
            "metrics",
            {"TELEMETRY_ENABLED": "true", "OTEL_SDK_DISABLED": "true", "READINESS_INTERVAL": "15"},
        ),
        Variant(
            "all_on",
            {
                "TELEMETRY_ENABLED": "true",
                "READINESS_INTERVAL": "15",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            },
        ),
        Variant("events", {"TELEMETRY_ENABLED": "false"}, ("-E",)),
    )


METRICS_ONLY = {
    "TELEMETRY_ENABLED": "true",
    "OTEL_SDK_DISABLED": "true",
    "READINESS_INTERVAL": "15",
}
HAMMER_PER_SECOND = 50.0


def hammer_variants() -> tuple[Variant, ...]:
    """metrics is the baseline, metrics_aa its A/A control, hammered the scraped one."""
    return (
        Variant("metrics", METRICS_ONLY),
        Variant("metrics_aa", METRICS_ONLY),
        Variant("hammered", METRICS_ONLY, hammer_per_second=HAMMER_PER_SECOND),
    )


SUITES = {"drain": ("off", variants), "hammer": ("metrics", lambda _sink: hammer_variants())}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--suite", choices=sorted(SUITES), default="drain")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--tasks", default="bench_noop,bench_cpu")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/12")
    )
    parser.add_argument(
        "--smoke", action="store_true", help="N=200, one pair: proves the harness runs"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    output = args.output or RESULTS.with_name(
        "latest.json" if args.suite == "drain" else f"{args.suite}.json"
    )
    baseline, build_variants = SUITES[args.suite]
    if args.smoke:
        args.n, args.pairs = 200, 1
    drainer = Drainer(args.redis_url, default_workdir())
    sink = DiscardingSink()
    report: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "n": args.n,
        "pairs": args.pairs,
        "drain": {},
    }
    print(
        f"{'task':<11}{'variant':<9}{'tasks/s':>9}{'ratio':>8}{'95% CI':>16}{'min':>7}{'max':>7}{'CPU-us/task':>13}{'cpu ratio':>10}"
    )
    for task in args.tasks.split(","):
        rows = summarize(
            interleaved(drainer, build_variants(sink), task, args.n, args.pairs), baseline=baseline
        )
        report["drain"][task] = rows  # type: ignore[index]
        for row in rows:
            low, high = row["ratio_ci95"]  # type: ignore[misc]
            print(
                f"{task:<11}{row['variant']:<9}{row['tasks_per_second_median']:>9.0f}{row['ratio_median']:>8.3f}"
                f"{f'[{low:.3f}, {high:.3f}]':>16}{row['ratio_min']:>7.3f}{row['ratio_max']:>7.3f}"
                f"{row['cpu_us_per_task_median']:>13.0f}{row['cpu_ratio_median']:>10.3f}"
                + (
                    f"  scrapes {row['scrapes']}, failed {row['scrape_failures']}"
                    if row["scrapes"]
                    else ""
                )
            )
    report["suite"] = args.suite
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
