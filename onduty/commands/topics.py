"""``onduty topics``: create or check every pipeline topic against its documented configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from onduty.env import SettingsError, env_int, env_str, kafka_bootstrap
from schemas.topics import DEFAULT_PARTITIONS, RAW_AGENT_STATUS, REJECTED_AGENT_STATUS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "topics", help="create or check every pipeline topic (partitions, cleanup policy, retention)",
        description="Create missing topics and fix drifted configs; --check only reports. "
                    "Exit status 1 when a topic differs from the documented configuration.",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; report what is missing or differs")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (ONDUTY_KAFKA_BOOTSTRAP)")
    parser.add_argument("--partitions", type=int, default=None,
                        help=f"partitions of every topic (ONDUTY_PARTITIONS, default {DEFAULT_PARTITIONS})")
    parser.add_argument("--replication-factor", type=int, default=None,
                        help="for new topics (ONDUTY_REPLICATION_FACTOR; default min(3, number of brokers))")
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds to keep retrying while Kafka is not reachable yet (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onduty.topics_admin import TopicsError, ensure_topics
    from schemas.topics import pipeline_topics

    bootstrap = args.bootstrap or kafka_bootstrap()
    partitions = args.partitions if args.partitions is not None else env_int("PARTITIONS", DEFAULT_PARTITIONS)
    if partitions < 1:  # 0 used to fall back to the default silently
        raise SettingsError(f"--partitions / ONDUTY_PARTITIONS must be at least 1, not {partitions}")
    replication = (args.replication_factor if args.replication_factor is not None
                   else env_int("REPLICATION_FACTOR", 0))
    if replication < 0:
        raise SettingsError("--replication-factor / ONDUTY_REPLICATION_FACTOR must be positive (0: automatic), "
                            f"not {replication}")
    replication = replication or None  # automatic: min(3, number of brokers)
    specs = pipeline_topics(env_str("RAW_TOPIC", RAW_AGENT_STATUS), partitions,
                            rejected_topic=env_str("REJECTED_TOPIC", REJECTED_AGENT_STATUS))
    deadline = time.monotonic() + args.wait
    while True:
        try:
            reports = asyncio.run(ensure_topics(bootstrap, specs, check_only=args.check,
                                                replication_factor=replication))
            break
        except TopicsError as exc:
            if time.monotonic() >= deadline or "cannot reach" not in str(exc):
                print(f"onduty topics: {exc}", file=sys.stderr)
                return 2
            time.sleep(1.0)
    for report in reports:
        print(report.line())
    problems = [report for report in reports if report.problem]
    if problems:
        hint = "run `onduty topics` to create and fix them" if args.check else \
            "a partition count cannot be changed in place: recreate the topic or set ONDUTY_PARTITIONS to match"
        print(f"{len(problems)} of {len(reports)} topics differ from the documented configuration; {hint}",
              file=sys.stderr)
        return 1
    return 0
