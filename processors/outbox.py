"""Everything one batch writes to Kafka, sent as one record batch per topic partition.

Faust sends each record, and each table write's changelog record, through its producer one at a time: about
30 µs of Python per record, several records per input event, most of a worker's time. An ``Outbox`` collects
a batch's records instead and appends them to aiokafka record batches (under 1 µs each), one per topic
partition, submitted together.

Two phases keep at-least-once replays exact: the derived and re-keyed records are delivered first, then the
table changelog records. A table value is never durable ahead of the records it implies, so a batch replayed
after a crash re-emits whatever could have been lost, and the rules turn what was already applied into no-ops.
The caller acknowledges the batch's input events only after ``deliver`` has returned.
"""

from __future__ import annotations

import asyncio

import faust
import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from processors.faust_io import StructTable, default_partition
from schemas import encode

Record = tuple[bytes | None, bytes | None, int | None]
"""key, value (None: a tombstone), timestamp ms (None: now)."""


class Outbox:
    """Records and table writes of one batch; ``deliver`` sends them and waits until Kafka has them all.

    ``send`` takes a derived or re-keyed record; without a partition, the key's default partition. ``put`` and
    ``delete`` change a table at once (later reads see the change) and queue its changelog record, encoded now
    (the Struct may change after), for the second phase.
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._records: dict[str, list[tuple[int | None, Record]]] = {}
        self._changelog: dict[tuple[str, int], dict[bytes, Record]] = {}

    def send(self, topic: str, key: bytes | None, value: bytes | None, *, partition: int | None = None,
             timestamp_ms: int | None = None) -> None:
        self._records.setdefault(topic, []).append((partition, (key, value, timestamp_ms)))

    def put(self, table: StructTable, key: str, value: msgspec.Struct) -> None:
        raw_key = key.encode()
        table.data[raw_key] = value
        self._changelog_record(table, raw_key, encode(value))

    def delete(self, table: StructTable, key: str) -> None:
        raw_key = key.encode()
        if raw_key in table.data:
            del table.data[raw_key]
            self._changelog_record(table, raw_key, None)

    def _changelog_record(self, table: StructTable, key: bytes, value: bytes | None) -> None:
        partition = table.partition_for_key(key)
        if partition is None:
            raise TypeError(f"table {table.name} does not say which partition holds key {key!r}")
        # the latest write of a key in the batch is the only one a compacted changelog needs
        self._changelog.setdefault((table.changelog_topic.get_topic_name(), partition), {})[key] = (
            key, value, None)

    async def deliver(self) -> None:
        """Send the records, wait for them, then the changelog records, and wait for those."""
        # the app's own aiokafka producer (idempotent, acks=all), which Faust exposes only this way
        producer: AIOKafkaProducer = self._app.producer._ensure_producer()
        by_partition: dict[tuple[str, int], list[Record]] = {}
        for topic, records in self._records.items():
            partitions = None
            for partition, record in records:
                if partition is None:
                    if partitions is None:
                        partitions = len(await producer.partitions_for(topic))
                    if record[0] is None:
                        raise ValueError(f"a record for {topic} has neither a key nor a partition")
                    partition = default_partition(record[0], partitions)
                by_partition.setdefault((topic, partition), []).append(record)
        self._records = {}
        await _send_batches(producer, by_partition)
        changelog = {tp: list(records.values()) for tp, records in self._changelog.items()}
        self._changelog = {}
        await _send_batches(producer, changelog)


async def _send_batches(producer: AIOKafkaProducer, by_partition: dict[tuple[str, int], list[Record]]) -> None:
    deliveries = []
    for (topic, partition), records in by_partition.items():
        builder = producer.create_batch()
        for key, value, timestamp_ms in records:
            if builder.append(key=key, value=value, timestamp=timestamp_ms) is None:
                deliveries.append(await _submit(producer, builder, topic, partition))
                builder = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=timestamp_ms) is None:
                    raise ValueError(f"a record for {topic}[{partition}] with key {key!r} is larger than a batch")
        deliveries.append(await _submit(producer, builder, topic, partition))
    if deliveries:
        await asyncio.gather(*deliveries)


async def _submit(producer: AIOKafkaProducer, builder: BatchBuilder, topic: str, partition: int) -> asyncio.Future:
    builder.close()  # complete: no linger, and no record of Faust's own sends is added to it
    return await producer.send_batch(builder, topic, partition=partition)
