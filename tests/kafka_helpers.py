"""Small aiokafka helpers for integration tests: create topics, read a topic to its end with a deadline."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topics(bootstrap: str, names: list[str], partitions: int = 1,
                        configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=configs or {})
             for name in names]
        )
    finally:
        await admin.close()


async def read_records(bootstrap: str, topic: str, expected: int, deadline_s: float = 30.0) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``expected`` records arrived or the deadline passed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + deadline_s
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def wait_until(predicate, deadline_s: float = 30.0, interval_s: float = 0.1):
    """Poll an async or sync predicate until it returns a truthy value; fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {deadline_s}s")
        await asyncio.sleep(interval_s)
