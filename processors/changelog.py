"""Table changelog records written once per offset commit, not once per batch.

A stage changes its tables in memory at once (later reads see the change) and marks the key here. The changelog
record of each marked key is encoded and sent when the worker commits its input offsets, just before the commit,
and only the key's latest value: an agent touched in every batch costs one changelog record per commit interval,
not one per batch (Kafka Streams flushes its stores on commit the same way).

What keeps replays exact: a committed offset never runs ahead of the changelog. The consumer takes a consistent
cut while no batch is in flight (``BatchesInFlight.exclusive``, a few milliseconds): the pending records, encoded,
and the input offsets acknowledged so far. Batches go on while the cut is sent; once Kafka has all of it, the
consumer commits the offsets of the cut, never later ones. A changelog may run ahead of the committed offsets (a
worker dies between writing a cut and committing it, or before acknowledging a batch whose records were
delivered): the events replayed from the committed offset then meet a state that already holds them, and the
rules make them no-ops, which is right because their records were delivered before their batch was acknowledged.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from onduty.record_batches import append_record
from processors.internal_codec import encode_internal

if TYPE_CHECKING:
    from processors.faust_io import StructTable

Record = tuple[bytes | None, bytes | None, int | None]
"""key, value (None: a tombstone), timestamp ms (None: now)."""


class PendingChangelog:
    """The table keys written since the last cut, by changelog topic partition, with their latest values."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], dict[bytes, msgspec.Struct | None]] = {}
        self._topics: dict[StructTable, str] = {}
        """Changelog topic name of each table (Faust derives it anew on every call)."""
        self._poisoned: BaseException | None = None

    def poison(self, reason: BaseException) -> None:
        """A batch changed the tables but its records may not have reached Kafka: never flush again.

        Offsets are then never committed again either (a cut precedes every commit), so whoever processes
        these partitions next starts from the last good changelog and committed offset and replays the rest.
        """
        self._poisoned = self._poisoned or reason

    def mark(self, table: "StructTable", key: bytes, value: msgspec.Struct | None) -> None:
        """``key`` of ``table`` now holds ``value`` (None: deleted)."""
        partition = table.partition_for_key(key)
        if partition is None:
            raise TypeError(f"table {table.name} does not say which partition holds key {key!r}")
        topic = self._topics.get(table)
        if topic is None:
            topic = self._topics[table] = table.changelog_topic.get_topic_name()
        pending = self._pending.get((topic, partition))
        if pending is None:
            pending = self._pending[(topic, partition)] = {}
        pending[key] = value

    def cut(self) -> dict[tuple[str, int], list[Record]]:
        """The changelog records of every marked key's current value, encoded now; nothing is marked after.

        Take the cut while no batch is in flight (a batch's table values must not be durable before its records
        are); sending it (``write``) may overlap with later batches.
        """
        if self._poisoned is not None:
            raise RuntimeError(f"table changes are not written after a failed batch ({self._poisoned!r})")
        pending, self._pending = self._pending, {}
        return {tp: [(key, None if value is None else encode_internal(value), None)
                     for key, value in keys.items()]
                for tp, keys in pending.items()}

    async def write(self, producer: AIOKafkaProducer, cut: dict[tuple[str, int], list[Record]]) -> int:
        """Send a cut and wait until Kafka has it all; the number of records. A failure poisons the changelog:
        what the cut held is lost to this worker, which must stop (its next owner replays from the last commit)."""
        try:
            await send_batches(producer, cut)
        except BaseException as exc:
            self.poison(exc)
            raise
        return sum(len(records) for records in cut.values())

_pending: "weakref.WeakKeyDictionary[Any, PendingChangelog]" = weakref.WeakKeyDictionary()


def pending_changelog(app: faust.App) -> PendingChangelog:
    """The app's ``PendingChangelog`` (one per worker, shared by its stages and written by its consumer)."""
    if app not in _pending:
        _pending[app] = PendingChangelog()
    return _pending[app]


async def send_batches(producer: AIOKafkaProducer, by_partition: dict[tuple[str, int], list[Record]]) -> None:
    """``submit_batches``, then wait until Kafka has acknowledged every record."""
    acknowledgements = await submit_batches(producer, by_partition)
    if acknowledgements:
        await asyncio.gather(*acknowledgements)


async def submit_batches(producer: AIOKafkaProducer,
                         by_partition: dict[tuple[str, int], list[Record]]) -> list[asyncio.Future]:
    """Append the records to one aiokafka record batch per topic partition (more when one fills) and submit them
    in that order; the futures resolve when Kafka has acknowledged each batch."""
    acknowledgements = []
    for (topic, partition), records in by_partition.items():
        builder = producer.create_batch()
        for key, value, timestamp_ms in records:
            if not append_record(builder, key, value, timestamp_ms):
                acknowledgements.append(await _submit(producer, builder, topic, partition))
                builder = producer.create_batch()
                if not append_record(builder, key, value, timestamp_ms):
                    raise ValueError(f"a record for {topic}[{partition}] with key {key!r} is larger than a batch")
        acknowledgements.append(await _submit(producer, builder, topic, partition))
    return acknowledgements


async def _submit(producer: AIOKafkaProducer, builder: BatchBuilder, topic: str, partition: int) -> asyncio.Future:
    builder.close()  # complete: no linger, and no record of Faust's own sends is added to it
    return await producer.send_batch(builder, topic, partition=partition)
