"""Kafka plumbing of the processor benchmarks: pre-fill a raw topic, the bare consume loop, watch a worker.

The raw topic is filled with exactly the records the ingest service writes (``ingest.records.event_record``):
key = agent id, value = the normalised event, dedup and receive-time headers, timestamp = the event's ``date``.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from onduty.simulator.traffic import SimulationConfig, agents_events
from schemas import AgentStatusEvent, decode_agent_status_payload

_payload_encoder = msgspec.json.Encoder()


def simulated_day(config: SimulationConfig) -> list[tuple[int, bytes]]:
    """``(send_ms, payload JSON)`` of every delivery, in sending order; duplicates per ``config.duplicate_share``.

    Held compactly (a day of 5,000 agents is close to a million events); out-of-order shares are left to the
    simulator's own tests: here only the volume and a realistic per-partition order matter.
    """
    items: list[tuple[int, bytes]] = []
    for agent in agents_events(config):
        items.extend((event.send_ms, _payload_encoder.encode(event.payload)) for event in agent)
    rng = random.Random(f"{config.seed}:bench-duplicates")
    duplicates = [(send + 300, body) for send, body in rng.sample(items, round(config.duplicate_share * len(items)))]
    items.extend(duplicates)
    items.sort(key=lambda item: item[0])
    return items


async def prefill(bootstrap: str, topic: str, items: list[tuple[int, bytes]]) -> float:
    """Write the deliveries to ``topic`` as the ingest would; return the seconds it took."""
    from ingest.records import event_record  # the ingest's own record builder: same key, value, headers

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024, enable_idempotence=True)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for send_ms, body in items:
            event = decode_agent_status_payload(msgspec.json.decode(body))
            r = event_record(event, topic, send_ms)
            pending.append(await producer.send(r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms,
                                               headers=r.headers))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def bare_consume(bootstrap: str, topic: str, expected: int, deadline_s: float) -> float:
    """The ceiling: consume ``expected`` records, decode each into the Struct, update a dict; return events/s."""
    decoder = msgspec.json.Decoder(AgentStatusEvent)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    state: dict[str, AgentStatusEvent] = {}
    count = 0
    first = None
    deadline = time.monotonic() + deadline_s
    try:
        while count < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for records in batches.values():
                if first is None:
                    first = time.monotonic()
                for record in records:
                    event = decoder.decode(record.value)
                    state[event.agent_id] = event
                count += len(records)
    finally:
        await consumer.stop()
    if count < expected or first is None:
        raise RuntimeError(f"bare consumer read {count} of {expected} records within {deadline_s:.0f}s")
    return count / (time.monotonic() - first)


@dataclass
class WorkerRun:
    events: int
    startup_s: float
    """From the worker's start to its first derived record."""
    processing_s: float
    """From its first derived record to its last one (all input committed)."""
    wall_s: float
    """From start to its last derived record."""
    outputs: int
    """Derived records written (all topics)."""
    trace: list[tuple[float, int]]
    """(seconds since start, derived records so far) at each poll that saw growth."""
    cpu_s: float | None = None
    """CPU time (user + system) the worker used from its first derived record to its last, if known."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.processing_s if self.processing_s > 0 else float("nan")

    @property
    def events_per_cpu_s(self) -> float | None:
        """Events per CPU-second of the worker: on a shared machine, steadier than events per wall second."""
        return self.events / self.cpu_s if self.cpu_s else None


async def _topic_end(consumer: AIOKafkaConsumer, topic: str) -> int:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        return 0
    offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    return sum(offsets.values())


async def watch_worker(bootstrap: str, raw_topic: str, group_id: str, output_topics: list[str], started_at: float,
                       deadline_s: float, alive=lambda: True, poll_s: float = 0.1, settle_s: float = 1.5,
                       crashed=None, stall_s: float = 120.0, cpu_seconds=None) -> WorkerRun:
    """Poll the worker's committed offsets and the end of every derived topic.

    Done when all input is committed and no derived topic has grown for ``settle_s``; the processing time runs
    from the first derived record to the last one (any stage, any topic). ``cpu_seconds`` (optional) reads the
    worker's CPU time, sampled at the first and the last derived record.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        await probe._client.force_metadata_update()  # noqa: SLF001
        total = await _topic_end(probe, raw_topic)

        async def outputs() -> int:
            return sum([await _topic_end(probe, topic) for topic in output_topics])

        out_base = out_last = await outputs()
        first_output = last_output = None
        cpu_first = cpu_last = None
        trace: list[tuple[float, int]] = []
        deadline = started_at + deadline_s
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError("the worker exited")
            if crashed is not None and crashed():
                raise RuntimeError(f"worker {crashed()}")
            out = await outputs()
            now = time.monotonic()
            if out > out_last:
                trace.append((round(now - started_at, 1), out - out_base))
                first_output = first_output or now
                last_output = now
                if cpu_seconds is not None:
                    cpu_last = cpu_seconds()
                    cpu_first = cpu_last if cpu_first is None else cpu_first
                out_last = out
            try:
                offsets = await admin.list_consumer_group_offsets(group_id)
            except KafkaError:  # the group (or the offsets topic of a fresh broker) does not exist yet
                offsets = {}
            committed = sum(o.offset for tp, o in offsets.items() if tp.topic == raw_topic and o.offset > 0)
            quiet_since = last_output if last_output is not None else started_at
            if committed < total and now - quiet_since > stall_s:
                raise RuntimeError(f"the worker stalled: no derived record for {now - quiet_since:.0f} s, "
                                   f"{committed:,} of {total:,} input events committed")
            if committed >= total and last_output is not None and now - last_output >= settle_s:
                cpu_s = cpu_last - cpu_first if cpu_first is not None and cpu_last is not None else None
                return WorkerRun(total, first_output - started_at, max(last_output - first_output, poll_s),
                                 last_output - started_at, out_last - out_base, trace, cpu_s or None)
            await asyncio.sleep(poll_s)
        raise RuntimeError(f"the worker did not commit all {total} events within {deadline_s:.0f}s")
    finally:
        await probe.stop()
        await admin.close()
