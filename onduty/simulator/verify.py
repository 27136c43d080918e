"""Read the derived topics back from Kafka and compare them with a simulation's expected results (the I/O edge)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from onduty.simulator.compare import Comparison, Record, compare
from schemas import topics as t

VERIFIED_TOPICS = (t.CALLCENTER_AGENTS, t.AGENT_STATE, t.AGENT_TIME_IN_STATUS, t.CALLCENTER_TIME_IN_STATUS)

Offsets = dict[TopicPartition, int]


async def end_offsets(bootstrap: str, topics: tuple[str, ...] = VERIFIED_TOPICS) -> Offsets:
    """The current end of every partition of ``topics`` (missing topics: none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # noqa: SLF001 (fresh topic list)
        partitions = [TopicPartition(topic, p) for topic in topics for p in _partitions(consumer, topic)]
        return dict(await consumer.end_offsets(partitions)) if partitions else {}
    finally:
        await consumer.stop()


def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    return consumer.partitions_for_topic(topic) or set()


async def read_topics(bootstrap: str, since: Offsets | None = None,
                      topics: tuple[str, ...] = VERIFIED_TOPICS, deadline_s: float = 120) -> dict[str, list[Record]]:
    """Every record of ``topics`` from ``since`` (default: the beginning) up to their current end, in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    records: dict[str, list[Record]] = {topic: [] for topic in topics}
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # noqa: SLF001 (fresh topic list)
        partitions = [TopicPartition(topic, p) for topic in topics for p in _partitions(consumer, topic)]
        if not partitions:
            return records
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, (since or {}).get(tp, 0))
        remaining = {tp for tp in partitions if (since or {}).get(tp, 0) < ends[tp]}
        deadline = time.monotonic() + deadline_s
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)
            for tp, batch in batches.items():
                for record in batch:
                    if record.offset >= ends[tp]:
                        break
                    value = None if record.value is None else msgspec.json.decode(record.value)
                    records[tp.topic].append((record.key.decode() if record.key else "", value))
            # the fetch position, not the last offset seen: compaction and control records leave gaps
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        if remaining:
            raise TimeoutError(f"could not read {sorted(str(tp) for tp in remaining)[:3]} to the end in {deadline_s}s")
    finally:
        await consumer.stop()
    return records


async def verify(bootstrap: str, expected: Mapping[str, Any], since: Offsets | None = None,
                 wait_s: float = 0.0, poll_s: float = 2.0) -> Comparison:
    """Compare the derived topics with ``expected``; with ``wait_s``, retry until they match or time runs out."""
    deadline = time.monotonic() + wait_s
    while True:
        result = compare(expected, await read_topics(bootstrap, since))
        if result.ok or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(poll_s)
