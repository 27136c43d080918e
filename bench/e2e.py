"""(c) End to end: latency from a webhook POST to the roster change on ``onduty.callcenter-agents.v1``, at a
steady 500 events/s, against the ceiling of a single bare Kafka hop (aiokafka produce with acks=all -> consume)
at the same rate.

Every event changes its agent's status, so each one yields exactly one roster record, recognised by its key
(``<call center>:<agent>``) and ``updated_ms`` (the event's ``date``). Each agent posts every ``agents / rate``
seconds, far apart enough that records cannot be confused. The first seconds of each round are a warm-up and
not counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    BenchmarkSkipped,
    Child,
    ONDUTY,
    source_dir,
    source_env,
    Result,
    create_topic,
    first_line,
    free_port,
    onduty_has_command,
    percentile,
    start_processor,
    unique,
    wait_http_answers,
    wait_http_ok,
)
from onduty.simulator.posting import body_for
from schemas.topics import CALLCENTER_AGENTS, DEFAULT_PARTITIONS

log = logging.getLogger(__name__)

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
STATUSES = ("available", "occupied", "wrapup")


class _Entry(msgspec.Struct):
    call_center_id: str
    agent_id: str
    updated_ms: int


_entry = msgspec.json.Decoder(_Entry)


def _payload(agent: int, sequence: int, date_ms: int) -> dict:
    return {
        "call_center_ids": [str(9_100_000_000_000_000 + agent % 10)],
        "target": {"id": 6_100_000_000_000_000 + agent, "type": "user", "name": f"bench {agent}",
                   "email": f"bench{agent}@example.com", "phone": "+15550000000"},
        "on_duty_status": STATUSES[sequence % len(STATUSES)],
        "on_duty_status_reason": "",
        "availability_status": "available",
        "powerdialer_mode": False,
        "powerdialer_session": None,
        "date": date_ms,
        "event_timestamp": date_ms + 1,
    }


async def _tail(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer of every partition of an existing topic, from its current end (no group, no rebalance)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="latest")
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(DEFAULT_PARTITIONS)])
    await consumer.seek_to_end()
    return consumer


async def _latency_round(send: Callable[[dict], Awaitable[None]], bootstrap: str, topic: str, key_of,
                         rate: float, seconds: float, warmup_s: float, agents: int, run_id: int) -> list[float]:
    """Send at ``rate``/s for ``warmup_s + seconds``; return the latencies (ms) after the warm-up."""
    consumer = await _tail(bootstrap, topic)
    pending: dict[tuple[str, int], tuple[float, bool]] = {}
    latencies: list[float] = []
    try:
        stop = asyncio.Event()

        async def consume() -> None:
            while not stop.is_set() or pending:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for records in batches.values():
                    for record in records:
                        key = key_of(record)
                        if key in pending:
                            sent, counted = pending.pop(key)
                            if counted:
                                latencies.append((now - sent) * 1000)
                if stop.is_set() and time.monotonic() > stop_deadline:
                    return

        stop_deadline = float("inf")
        reader = asyncio.create_task(consume())
        total = int(rate * (warmup_s + seconds))
        warmup = int(rate * warmup_s)
        gate = asyncio.Semaphore(64)
        tasks = set()
        began = time.monotonic()
        for i in range(total):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            agent = i % agents
            # every agent's events are agents/rate seconds apart; run_id keeps rounds' dates distinct
            date_ms = int(time.time() * 1000) + run_id
            payload = _payload(agent, i // agents, date_ms)
            pending[(str(6_100_000_000_000_000 + agent), date_ms)] = (time.monotonic(), i >= warmup)

            async def one(p: dict = payload) -> None:
                async with gate:
                    await send(p)

            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        stop_deadline = time.monotonic() + 10
        stop.set()
        await reader
        missing = sum(1 for _, counted in pending.values() if counted)
        if missing:
            latencies.extend([float("inf")] * missing)  # never seen within 10 s: counts as a miss
    finally:
        await consumer.stop()
    return latencies


async def e2e_benchmark(bootstrap: str, workdir: Path, rounds: int, quick: bool, rate: float = 500.0) -> list[Result]:
    if not onduty_has_command("processor"):
        raise BenchmarkSkipped("`onduty processor` is not available yet")
    if not onduty_has_command("ingest"):
        raise BenchmarkSkipped("`onduty ingest` is not available yet")
    seconds, warmup_s, agents = (10.0, 3.0, 1000) if quick else (30.0, 5.0, 2000)
    p50 = Result("end to end", f"POST -> roster record p50 at {rate:.0f}/s", "ms", "ingest + processor",
                 "bare Kafka hop", "", higher_is_better=False)
    p99 = Result("end to end", f"POST -> roster record p99 at {rate:.0f}/s", "ms", "ingest + processor",
                 "bare Kafka hop", "p99 < 250 ms", higher_is_better=False)

    # the ceiling: one produce (acks=all) -> consume hop on a quiet topic, same rate, same loop
    hop_topic = unique("hop")
    await create_topic(bootstrap, hop_topic, DEFAULT_PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    encoder = msgspec.json.Encoder()

    async def produce(payload: dict) -> None:
        await producer.send_and_wait(hop_topic, encoder.encode(payload), key=str(payload["target"]["id"]).encode())

    def hop_key(record) -> tuple[str, int]:
        value = msgspec.json.decode(record.value)
        return str(value["target"]["id"]), value["date"]

    try:
        for r in range(rounds):
            lat = await _latency_round(produce, bootstrap, hop_topic, hop_key, rate, seconds, warmup_s, agents, r)
            p50.ceiling.append(percentile(lat, 0.50))
            p99.ceiling.append(percentile(lat, 0.99))
            print(f"  round {r + 1}: bare Kafka hop p50 {p50.ceiling[-1]:.1f} ms, p99 {p99.ceiling[-1]:.1f} ms",
                  file=sys.stderr, flush=True)
    finally:
        await producer.stop()

    # the candidate: the real services, started as a user would, on topics created first (`onduty topics`)
    raw_topic = unique("raw")
    created = await asyncio.to_thread(subprocess.run, [*ONDUTY, "topics", "--bootstrap", bootstrap],
                                      cwd=source_dir(), capture_output=True,
                                      env={**os.environ, **source_env(), "ONDUTY_RAW_TOPIC": raw_topic},
                                      text=True, timeout=120)
    if created.returncode != 0:
        raise RuntimeError(f"onduty topics failed:\n{created.stdout}{created.stderr}")
    port = free_port()
    ingest = Child([*ONDUTY, "--log-level", "WARNING", "ingest"], {
        "ONDUTY_KAFKA_BOOTSTRAP": bootstrap, "ONDUTY_RAW_TOPIC": raw_topic, "ONDUTY_INGEST_HOST": "127.0.0.1",
        "ONDUTY_INGEST_PORT": str(port), "ONDUTY_WEBHOOK_SECRETS": SECRET,
        "ONDUTY_SPOOL_DIR": str(workdir / "spool"),
    }, workdir / "ingest.log")
    processor: Child | None = None
    try:
        await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{port}/readyz", 90, ingest)
        processor = start_processor(bootstrap, raw_topic, unique("e2e"), workdir, live=True)
        # let the worker come up (query API answering, then its topics' metadata) before the first event
        await asyncio.to_thread(wait_http_answers, f"http://127.0.0.1:{processor.port}/agents/none", 120, processor)
        await asyncio.sleep(5)
        url = f"http://127.0.0.1:{port}/webhooks/dialpad/agent-status"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                         timeout=aiohttp.ClientTimeout(total=5)) as session:

            async def post(payload: dict) -> None:
                body, content_type = body_for(payload, SECRET)
                async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"ingest answered {response.status}: {await response.text()}")

            def roster_key(record) -> tuple[str, int] | None:
                if record.value is None:
                    return None
                entry = _entry.decode(record.value)
                return entry.agent_id, entry.updated_ms

            await _wait_for_pipeline(post, bootstrap, roster_key, processor)
            for r in range(rounds):
                lat = await _latency_round(post, bootstrap, CALLCENTER_AGENTS, roster_key, rate, seconds, warmup_s,
                                           agents, 1000 + r)
                p50.candidate.append(percentile(lat, 0.50))
                p99.candidate.append(percentile(lat, 0.99))
                print(f"  round {r + 1}: pipeline p50 {p50.candidate[-1]:.1f} ms, p99 {p99.candidate[-1]:.1f} ms",
                      file=sys.stderr, flush=True)
                missing = sum(1 for x in lat if x == float("inf"))
                seen = sorted(x for x in lat if x != float("inf"))
                print(f"  round {r + 1}: {len(seen)} seen, {missing} missing; seen p50 "
                      f"{percentile(seen, 0.5):.1f} ms, max {seen[-1] if seen else float('nan'):.1f} ms",
                      file=sys.stderr, flush=True)
                p99.notes.append(f"round {r + 1}: {len(lat):,} events measured, {missing:,} without a roster record "
                                 "within 10 s of the end")
    except RuntimeError as exc:
        log.error("pipeline failed: %s\n--- ingest log ---\n%s\n--- processor log ---\n%s", exc, ingest.tail(),
                  processor.tail() if processor else "")
        p50.failure = p99.failure = first_line(exc)
    finally:
        if processor is not None:
            processor.stop()
        ingest.stop()
    p99.notes.append(f"{seconds:.0f} s per round after a {warmup_s:.0f} s warm-up, {agents:,} agents, "
                     "each event a status change")
    return [p50, p99]


async def _wait_for_pipeline(post, bootstrap: str, roster_key, processor: Child, deadline_s: float = 120) -> None:
    """Post one event at a time until its roster record comes back: the worker has joined and is processing."""
    consumer = await _tail(bootstrap, CALLCENTER_AGENTS)
    try:
        deadline = time.monotonic() + deadline_s
        sequence = 0
        while time.monotonic() < deadline:
            if not processor.alive():
                raise RuntimeError("the processor exited")
            crash = processor.crash()
            if crash:
                raise RuntimeError(f"worker {crash}")
            date_ms = int(time.time() * 1000)
            await post(_payload(999_999, sequence, date_ms))
            sequence += 1
            until = time.monotonic() + 2
            while time.monotonic() < until:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    if any(roster_key(r) == (str(6_100_000_000_000_000 + 999_999), date_ms) for r in records):
                        return
        raise RuntimeError(f"no roster record came back within {deadline_s:.0f}s")
    finally:
        await consumer.stop()
