"""CPU per request of the ingest's own work, without HTTP: ``python -m bench.ingest_path [--concurrent 26]``.

A profiling aid for the webhook handler's path (not one of the benchmarks in ``python -m bench``, which load the
whole service over HTTP against a bare aiohttp handler). Signed events (the load check's tokens) go through
what the handler does between reading the body and answering, in four cumulative stages:

* ``verify``: ``TokenVerifier.verify_body`` (HS256, claims);
* ``decode``: and the schema Struct (``decode_event``);
* ``record``: and the raw-topic record with its dedup identity (``event_record``);
* ``keep``: and ``Delivery.keep`` against a real Kafka broker, ``--concurrent`` requests at a time (one wave of
  coroutines, gathered; the next wave starts when every request of the last one was acknowledged). Under the
  load check's 64 connections the service's produce requests carry about 26 records each: the default.

Each figure is process CPU per request, the best of ``--blocks`` blocks (the machine's neighbours move single
blocks by tens of percent). For a figure that does not move with them, count instructions: run the module
under ``valgrind --tool=callgrind --callgrind-out-file=/dev/null`` once with ``--waves 0`` and once with
``--waves N`` (same other options, a running broker); the difference of the two totals divided by
``N × --concurrent × --blocks`` is the instructions per request of the ``keep`` stage, repeatable to about 0.1%.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import cleanup, create_topic, kafka, unique, workdir
from bench.ingest_load import SECRET, tokens


WARM_UP_WAVES = 100
"""Run before the measured blocks, also with ``--waves 0`` (the baseline of an instruction count)."""


def pure_stages(topic: str) -> dict[str, Callable[[bytes], object]]:
    """The handler's work before ``Delivery.keep``, cumulatively (the records are for ``topic``)."""
    from ingest.records import decode_event, event_record
    from ingest.verification import TokenVerifier

    verifier = TokenVerifier([SECRET])
    return {
        "verify": verifier.verify_body,
        "decode": lambda body: decode_event(verifier.verify_body(body)),
        "record": lambda body: event_record(decode_event(verifier.verify_body(body)), topic,
                                            time.time_ns() // 1_000_000),
    }


def cpu_per_call(function: Callable[[bytes], object], bodies: list[bytes], blocks: int) -> float:
    best = float("inf")
    for _ in range(blocks):
        started = time.process_time()
        for body in bodies:
            function(body)
        best = min(best, (time.process_time() - started) / len(bodies))
    return best


async def keep_stage(bootstrap: str, bodies: list[bytes], concurrent: int, waves: int, blocks: int) -> float | None:
    """CPU per request of verify, decode, record and ``Delivery.keep`` (real broker), ``concurrent`` at a time."""
    from ingest.delivery import PUBLISHED, Delivery
    from ingest.metrics import IngestMetrics
    from ingest.publisher import KafkaPublisher
    from ingest.spool import Spool

    topic = unique("ingest-path")
    await create_topic(bootstrap, topic, 8)
    to_record = pure_stages(topic)["record"]
    publisher = KafkaPublisher(bootstrap, publish_deadline_s=30)  # also under valgrind
    if not await publisher.start():
        raise SystemExit(f"Kafka at {bootstrap} not reachable")
    spool_dir = Path(tempfile.mkdtemp(prefix="onduty-bench-spool-"))
    spool = Spool(spool_dir, max_bytes=1 << 30, segment_bytes=1 << 26)
    spool.open()
    delivery = Delivery(publisher, spool, IngestMetrics(), deadline_s=30)
    delivery.kafka_up = True

    async def handle(body: bytes) -> None:
        if await delivery.keep(to_record(body)) != PUBLISHED:
            raise SystemExit("an event went to the spool: the broker did not acknowledge in time")

    async def run(count: int, start: int = 0) -> None:
        for wave in range(count):
            first = start + wave * concurrent
            await asyncio.gather(*(handle(bodies[(first + i) % len(bodies)]) for i in range(concurrent)))

    try:
        await run(WARM_UP_WAVES)  # connections, the new topic's leaders, the lanes of every partition
        best = None
        for _ in range(blocks if waves else 0):
            started = time.process_time()
            await run(waves)
            spent = (time.process_time() - started) / (waves * concurrent)
            best = spent if best is None else min(best, spent)
        return best
    finally:
        await publisher.stop(10)
        await spool.close()
        cleanup(spool_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                        help="a Kafka broker (default: KAFKA_BOOTSTRAP_SERVERS, else a local broker of our own)")
    parser.add_argument("--tokens", type=int, default=5_000, help="distinct signed events")
    parser.add_argument("--concurrent", type=int, default=26, help="requests per wave in the keep stage")
    parser.add_argument("--waves", type=int, default=200, help="waves per block in the keep stage (0: skip it)")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--pure-rounds", type=int, default=1,
                        help="passes over the tokens per block of each pure stage (0: skip them)")
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # a new topic's first sends wait for its leaders
    bodies = tokens(args.tokens)
    if args.pure_rounds:
        for name, function in pure_stages("bench").items():
            spent = cpu_per_call(function, bodies * args.pure_rounds, args.blocks)
            print(f"{name:7} {spent * 1e6:7.2f} µs CPU per request (cumulative)")
    directory = workdir()
    try:
        with kafka(args.bootstrap, directory) as bootstrap:
            spent = asyncio.run(keep_stage(bootstrap, bodies, args.concurrent, args.waves, args.blocks))
    finally:
        cleanup(directory)
    if spent is not None:
        print(f"keep    {spent * 1e6:7.2f} µs CPU per request (cumulative; {args.concurrent} concurrent requests "
              "per wave against the broker)")


if __name__ == "__main__":
    main()
