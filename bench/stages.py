"""CPU per input event of each processor stage, without Kafka: ``python -m bench.stages [--events N] [--reps R]``.

A profiling aid for the processors' rules and table handling (not one of the benchmarks in ``python -m bench``,
which measure whole workers against a bare consume loop). The bench's simulated input (2,000 agents, 8 h,
2% duplicates, 1% out of order) is split by partition as the ingest would write it and fed to the stages of a
worker app that is built but never started: each fetch-sized batch to the raw-topic stage, the records it sends
to the internal re-key topics on to their stages, and a changelog cut every 24 batches (a commit every ~3 s at
~8k events/s). Times are process CPU seconds, the best of ``--reps`` runs.

The derived records are summarised per topic (count and a digest of their decoded values, key order ignored):
a change that is meant to keep the results must keep every digest.

The times are a guide, not a verdict: this machine's neighbours move them by tens of percent from one minute to
the next. Two copies of the same code run at the same time on one core (``taskset -c 1``) agreed within 1%; old
and new versions compared that way (``git worktree add /tmp/old HEAD``) still disagreed from run to run on
changes of a few percent. Confirm a speed-up with ``python -m bench processors --rounds 5``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
from faust.types import TP

from bench.kafka_io import simulated_day
from onduty.simulator.agents import HOUR_MS
from onduty.simulator.traffic import SimulationConfig
from processors.app import create_app
from processors.batches import BatchRecord, batch_topics_of
from processors.changelog import pending_changelog
from processors.outbox import Outbox
from processors.settings import ProcessorSettings
from schemas import decode_agent_status_payload
from schemas.partitioning import default_partition

BATCH = 1000
"""Records per batch: a fetch of one partition, as the worker's consumer hands them over."""
CUT_EVERY = 24
"""Batches between changelog cuts."""


def raw_batches(settings: ProcessorSettings, events: int) -> list[list[BatchRecord]]:
    """The simulated deliveries as the ingest writes them, in fetch-sized batches of one partition each."""
    from ingest.records import event_record

    now = int(time.time() * 1000)
    day = 24 * HOUR_MS
    config = SimulationConfig(agents=2_000, call_centers=20, seed=11, start_ms=now - now % day - day,
                              duration_ms=8 * HOUR_MS)
    by_partition: dict[int, list[BatchRecord]] = collections.defaultdict(list)
    for send_ms, body in simulated_day(config)[:events]:
        record = event_record(decode_agent_status_payload(msgspec.json.decode(body)), settings.raw_topic, send_ms)
        partition = default_partition(record.key, settings.partitions)
        records = by_partition[partition]
        records.append(BatchRecord(TP(settings.raw_topic, partition), len(records), record.timestamp_ms, record.key,
                                   record.value, record.headers))
    batches = []
    for start in range(0, max(map(len, by_partition.values())), BATCH):
        batches += [records[start:start + BATCH] for _, records in sorted(by_partition.items())
                    if records[start:start + BATCH]]
    return batches


class Run:
    """One pass of the input through a fresh app's stages."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.stages: dict[str, Callable[[list[Any], Outbox], None]] = {
            name: topic.apply for name, topic in batch_topics_of(self.app).items() if topic.apply is not None
        }
        self.cpu_s: collections.Counter[str] = collections.Counter()
        self.outputs: dict[str, int] = collections.Counter()
        self.digests: dict[str, Any] = {}
        self._offsets: collections.Counter[tuple[str, int]] = collections.Counter()

    def apply(self, topic: str, records: list[Any]) -> None:
        outbox = Outbox(self.app)
        started = time.process_time()
        self.stages[topic](records, outbox)
        self.cpu_s[topic] += time.process_time() - started
        sent, outbox._records = outbox._records, {}
        for target, queued in sent.items():
            if target in self.stages:  # an internal re-key topic: on to its stage, one batch per partition
                by_partition: dict[int, list[BatchRecord]] = collections.defaultdict(list)
                for partition, (key, value, _) in queued:
                    if partition is None:
                        partition = default_partition(key, self.settings.partitions)
                    offset = self._offsets[(target, partition)]
                    self._offsets[(target, partition)] += 1
                    by_partition[partition].append(BatchRecord(TP(target, partition), offset, None, key, value))
                for _, batch in sorted(by_partition.items()):
                    self.apply(target, batch)
            else:
                self.outputs[target] += len(queued)
                digest = self.digests.setdefault(target, hashlib.sha256())
                for _, (key, value, _) in queued:
                    digest.update(key or b"")
                    digest.update(b"-" if value is None else _canonical(value))

    def cut(self) -> None:
        started = time.process_time()
        pending_changelog(self.app).cut()
        self.cpu_s["changelog cut"] += time.process_time() - started


def _canonical(value: bytes) -> bytes:
    return msgspec.json.encode(msgspec.json.decode(value), order="sorted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="input events (default 100,000)")
    parser.add_argument("--reps", type=int, default=3, help="runs; the best time of each stage is shown")
    args = parser.parse_args(argv)
    gc.set_threshold(50_000, 20, 100)  # as `onduty processor`
    settings = ProcessorSettings(app_id="stages", idle_advance=False)
    batches = raw_batches(settings, args.events)
    events = sum(map(len, batches))
    best: dict[str, float] = {}
    run = None
    for _ in range(args.reps):
        run = Run(settings)
        for index, batch in enumerate(batches):
            run.apply(settings.raw_topic, batch)
            if index % CUT_EVERY == CUT_EVERY - 1:
                run.cut()
        run.cut()
        for stage, seconds in run.cpu_s.items():
            best[stage] = min(best.get(stage, seconds), seconds)
    assert run is not None
    print(f"{events:,} events, {len(batches)} raw batches, best of {args.reps} runs (process CPU time)")
    for stage, seconds in best.items():
        print(f"  {stage:44s} {1e6 * seconds / events:7.1f} µs/event")
    total = sum(best.values())
    print(f"  {'all stages':44s} {1e6 * total / events:7.1f} µs/event ({events / total:,.0f} events per CPU-second)")
    print("derived records:")
    for topic in sorted(run.outputs):
        print(f"  {topic:44s} {run.outputs[topic]:8,}  {run.digests[topic].hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
