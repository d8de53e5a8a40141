"""``python -m bench [--suite all|drain|scrape|producer|spans|memory|profile|hammer|otlp|fetch|failover|instructions] [--n N] [--pairs P] [--tasks ...]``.

``all`` (the default) runs ``scrape``, ``producer``, ``spans``, ``drain``,
``memory`` and ``profile`` and prints their tables; results are merged into
bench/results/latest.json under those keys.

* ``drain`` compares telemetry variants against "off", interleaved, with an A/A control;
* ``fetch`` compares reliable fetch (``off``, as shipped) against today's fetch
  (kombu's BRPOP, ``off_stockfetch``), telemetry off, with an A/A control; it
  writes bench/results/fetch.json;
* ``scrape`` measures render time, exposition size, cached scrape latency and
  Redis round trips per depth poll (:mod:`bench.scrape`);
* ``producer`` compares the ``send_task`` rate without ``telemetry.install``,
  with it, and with it and tracing (:mod:`bench.producer`);
* ``spans`` times the consumer span handlers in-process: none, this project's
  and upstream's ``CeleryInstrumentor``, plus OTLP encoding (:mod:`bench.spans`);
* ``memory`` drains ``--memory-n`` tasks with everything on and compares RSS at
  half-way and at the end (:mod:`bench.memory`);
* ``profile`` samples an everything-on worker draining ``--profile-n`` no-op
  tasks with py-spy and splits its busy CPU into Celery, metrics and tracing
  (:mod:`bench.profile`; not part of ``--smoke``);
* ``hammer`` compares a metrics-on worker whose /metrics is scraped 50 times a
  second while it drains against the same worker unscraped (with an A/A
  control), and writes bench/results/hammer.json.
* ``otlp`` compares a metrics worker exporting its metrics over OTLP every 10 s
  (to a discarding sink) against the same worker without (with an A/A control),
  and writes bench/results/otlp.json. Both have the SDK on with nothing traced
  (``OTEL_SDK_DISABLED=true``, which ``metrics`` uses to turn tracing off, turns
  every signal off, OTLP metrics included); ``metrics`` runs beside them, so its
  row shows what that untraced SDK costs.
* ``instructions`` runs ``off``, ``metrics`` and ``all_on`` workers under callgrind,
  one at a time, each draining ``--n`` tasks (200 by default), and reports
  instructions per task by process role: repeatable on a loaded machine, for
  comparing designs; not part of ``all`` (:mod:`bench.instructions`); it writes
  bench/results/instructions.json.
* ``failover`` kills a Sentinel-watched master mid-stream ``--runs`` times and
  counts the acknowledged publishes the promoted replica lacks
  (:mod:`bench.failover`); it writes bench/results/failover.json.

Each drain session is bracketed by a CPU-speed check (:mod:`bench.steadiness`),
kept in its verdict.

``--smoke`` is CI's run: N=200, one pair, 400 tasks for memory, no speed
judgement, only that the harness works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench import failover, instructions, memory, producer, profile, scrape, spans, steadiness
from bench.drain import Drainer, Variant, default_workdir, summarize
from bench.sink import DiscardingSink
from bench.sliced import SLICE_SIZE, sliced
from bench.verdict import CONTROLS, print_verdict, ratio_interval, verdict

RESULTS = Path(__file__).with_name("results") / "latest.json"


OFF = {"TELEMETRY_ENABLED": "false"}
#: Metrics and readiness (probes at the default 15 s), tracing off.
METRICS_ONLY = {
    "TELEMETRY_ENABLED": "true",
    "OTEL_SDK_DISABLED": "true",
    "READINESS_INTERVAL": "15",
}


def tracing_only(sink: DiscardingSink) -> dict[str, str]:
    """Tracing with the default sampler, every span exported to ``sink``; metrics off."""
    return {
        "TELEMETRY_ENABLED": "true",
        "METRICS_ENABLED": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
    }


def variants(sink: DiscardingSink) -> tuple[Variant, ...]:
    """off is the baseline; off_aa the A/A control; events the event-based anchor;
    all_on_sdk, run only when named, is all_on with run records encoded by the SDK
    (``bench.sdk_encoder``), for the export-encoding decision."""
    everything = {
        "TELEMETRY_ENABLED": "true",
        "READINESS_INTERVAL": "15",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
    }
    return (
        Variant("off", OFF),
        Variant("off_aa", OFF),
        Variant("metrics", METRICS_ONLY),
        Variant("tracing", tracing_only(sink)),
        Variant("all_on", everything),
        Variant("all_on_sdk", everything, includes=("bench.sdk_encoder",)),
        Variant("events", OFF, ("-E",)),
    )


#: Variants that run only when ``--variants`` names them.
ON_REQUEST = frozenset({"all_on_sdk"})
HAMMER_PER_SECOND = 50.0
DRAIN_N = 10_000
HAMMER_N = 40_000
INSTRUCTIONS_N = 200


def hammer_variants() -> tuple[Variant, ...]:
    """metrics is the baseline, metrics_aa its A/A control, hammered the scraped one."""
    return (
        Variant("metrics", METRICS_ONLY),
        Variant("metrics_aa", METRICS_ONLY),
        Variant("hammered", METRICS_ONLY, hammer_per_second=HAMMER_PER_SECOND),
    )


#: Metrics with the SDK on but nothing traced: no span is sampled, none exported.
METRICS_SDK = {
    "TELEMETRY_ENABLED": "true",
    "READINESS_INTERVAL": "15",
    "OTEL_TRACES_SAMPLER": "always_off",
    "OTEL_TRACES_EXPORTER": "none",
}
#: Six times the SDK's default rate, so exports happen during the drains.
OTLP_INTERVAL_MILLIS = "10000"


def otlp_variants(sink: DiscardingSink) -> tuple[Variant, ...]:
    """metrics_sdk is the baseline, metrics_sdk_aa its A/A control, metrics_otlp exports over OTLP."""
    return (
        Variant("metrics_sdk", METRICS_SDK),
        Variant("metrics_sdk_aa", METRICS_SDK),
        Variant(
            "metrics_otlp",
            {
                **METRICS_SDK,
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_METRIC_EXPORT_INTERVAL": OTLP_INTERVAL_MILLIS,
            },
        ),
        Variant("metrics", METRICS_ONLY),
    )


def fetch_variants() -> tuple[Variant, ...]:
    """off_stockfetch (kombu's BRPOP, today's fetch) is the baseline, off_stockfetch_aa its
    A/A control, off reliable fetch as shipped; the telemetry is off in all three."""
    stock = {**OFF, "BROKER_RELIABLE_FETCH": "false"}
    return (
        Variant("off_stockfetch", stock),
        Variant("off_stockfetch_aa", stock),
        Variant("off", OFF),
    )


DRAIN_SUITES = {
    "drain": ("off", variants),
    "hammer": ("metrics", lambda _sink: hammer_variants()),
    "otlp": ("metrics_sdk", otlp_variants),
    "fetch": ("off_stockfetch", lambda _sink: fetch_variants()),
}
#: Suites whose results go to a file of their own, named after them.
SIDE_SUITES = ("hammer", "otlp", "fetch", "failover", "instructions")
SUITES = (
    "all",
    "drain",
    "fetch",
    "scrape",
    "producer",
    "spans",
    "memory",
    "profile",
    "hammer",
    "otlp",
    "failover",
    "instructions",
)


def everything_on(sink: DiscardingSink) -> Variant:
    return next(v for v in variants(sink) if v.name == "all_on")


def drain_table(
    sink: DiscardingSink,
    suite: str,
    tasks: list[str],
    n: int,
    pairs: int,
    slice_size: int,
    steadiness_samples: int,
    only: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each task's rows and verdict; the verdict records how steady the CPUs were at both ends.

    ``only``: the suite's variants to run (all when empty); its baseline and A/A control
    always run, or nothing could be judged."""
    baseline, suite_variants = DRAIN_SUITES[suite]
    keep = only | {baseline, CONTROLS[suite]} if only else frozenset()

    def build_variants(sink: DiscardingSink) -> tuple[Variant, ...]:
        if keep:
            return tuple(v for v in suite_variants(sink) if v.name in keep)
        return tuple(v for v in suite_variants(sink) if v.name not in ON_REQUEST)

    print(
        f"{'task':<11}{'variant':<15}{'tasks/s':>9}{'ratio':>8}{'95% CI':>16}{'min':>7}{'max':>7}{'CPU-us/task':>13}{'cpu ratio':>10}"
    )
    results: dict[str, Any] = {}
    verdicts: dict[str, Any] = {}
    for task in tasks:
        before = steadiness.measure(steadiness_samples)
        runs = sliced(build_variants(sink), task, n, pairs, default_workdir(), slice_size)
        rows = summarize(runs, baseline=baseline)
        after = steadiness.measure(steadiness_samples)
        results[task] = rows
        for row in rows:
            low, high = ratio_interval(row)
            print(
                f"{task:<11}{row['variant']:<15}{row['tasks_per_second_median']:>9.0f}{row['ratio_median']:>8.3f}"
                f"{f'[{low:.3f}, {high:.3f}]':>16}{row['ratio_min']:>7.3f}{row['ratio_max']:>7.3f}"
                f"{row['cpu_us_per_task_median']:>13.0f}{row['cpu_ratio_median']:>10.3f}"
                + (
                    f"  scrapes {row['scrapes']}, failed {row['scrape_failures']}"
                    if row["scrapes"]
                    else ""
                )
            )
        verdicts[task] = verdict(task, rows, CONTROLS[suite])
        verdicts[task]["steadiness"] = {"before": before, "after": after}
        print(f"{task}: before, {steadiness.describe(before)}")
        print(f"{task}: after, {steadiness.describe(after)}")
        print_verdict(task, verdicts[task])
    return results, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--suite", choices=SUITES, default="all")
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="tasks per drain: 10,000, 40,000 for hammer, 200 for instructions",
    )
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument(
        "--variants", default="", help="a drain suite's variants to run, comma-separated (all)"
    )
    parser.add_argument(
        "--slice", type=int, default=SLICE_SIZE, help="tasks per turn in the drain sessions"
    )
    parser.add_argument("--memory-n", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("--producer-n", type=int, default=5000)
    parser.add_argument("--profile-n", type=int, default=20_000)
    parser.add_argument("--tasks", default="bench_noop,bench_cpu")
    parser.add_argument("--runs", type=int, default=5, help="failovers in the failover suite")
    parser.add_argument(
        "--steadiness-samples",
        type=int,
        default=20,
        help="CPU-speed loops per CPU, before and after each session",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/12")
    )
    parser.add_argument(
        "--smoke", action="store_true", help="N=200, one pair: proves the harness runs"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    output = args.output or RESULTS.with_name(
        f"{args.suite}.json" if args.suite in SIDE_SUITES else "latest.json"
    )
    if args.n is None:
        # The hammer suite scrapes for the whole drain: at least 30 s of it.
        args.n = {"hammer": HAMMER_N, "instructions": INSTRUCTIONS_N}.get(args.suite, DRAIN_N)
    if args.smoke:
        args.n, args.pairs, args.memory_n, args.scrapes, args.producer_n = 200, 1, 400, 50, 200
        args.steadiness_samples = 3
    drainer = Drainer(args.redis_url, default_workdir())
    sink = DiscardingSink()
    run = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": "python -m bench " + " ".join(sys.argv[1:]),
    }
    report: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    report.update(run)
    if args.suite in ("all", "scrape"):
        report["scrape"] = scrape.measure(args.redis_url, args.scrapes)
        scrape.print_table(report["scrape"])
    if args.suite in ("all", "producer"):
        report["producer"] = producer.measure(args.redis_url, args.producer_n, args.pairs, sink)
        producer.print_table(report["producer"])
    if args.suite in ("all", "spans"):
        report["spans"] = spans.measure(args.pairs)
        spans.print_table(report["spans"])
    if args.suite == "failover":
        report["failover"] = failover.measure(args.runs)
        failover.print_table(report["failover"])
    if args.suite == "instructions":
        names = [name for name in args.variants.split(",") if name] or list(instructions.VARIANTS)
        chosen = [v for v in variants(sink) if v.name in names]
        report["instructions"] = instructions.measure(chosen, args.tasks.split(","), args.n)
        instructions.print_table(report["instructions"])
    if args.suite in ("all", *DRAIN_SUITES):
        suite = "drain" if args.suite == "all" else args.suite
        report.update(n=args.n, pairs=args.pairs, slice=args.slice, suite=suite)
        results, verdicts = drain_table(
            sink,
            suite,
            args.tasks.split(","),
            args.n,
            args.pairs,
            args.slice,
            args.steadiness_samples,
            frozenset(name for name in args.variants.split(",") if name),
        )
        # Per task, so the no-op and CPU-task sessions may be run one at a time.
        report.setdefault("drain", {}).update(results)
        report.setdefault("verdict", {}).update(verdicts)
    if args.suite in ("all", "memory"):
        report["memory"] = memory.measure(drainer, everything_on(sink), args.memory_n)
        memory.print_table(report["memory"])
    if args.suite == "profile" or (args.suite == "all" and not args.smoke):
        report["profile"] = profile.measure(drainer, everything_on(sink), args.profile_n)
        profile.print_table(report["profile"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
