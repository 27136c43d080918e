"""Everything one batch writes to Kafka, sent as one record batch per topic partition.

Faust sends each record, and each table write's changelog record, through its producer one at a time: about
30 µs of Python per record, several records per input event, most of a worker's time. An ``Outbox`` collects
a batch's records instead and appends them to aiokafka record batches (under 1 µs each), one per topic
partition, submitted together.

Table writes change the table at once and are marked in the worker's ``PendingChangelog``, whose records go out
before the next offset commit (``processors.changelog``): a table value is never durable ahead of the records it
implies, so a batch replayed after a crash re-emits whatever could have been lost, and the rules turn what was
already applied into no-ops. A batch's input events are acknowledged only once Kafka has all its outbox's records
(``Deliveries``).
"""

from __future__ import annotations

import asyncio
import weakref

import faust
import msgspec
from aiokafka import AIOKafkaProducer

from processors.changelog import Record, pending_changelog, submit_batches
from processors.faust_io import StructTable
from schemas.partitioning import default_partition


class Outbox:
    """Records and table writes of one batch; ``submit`` hands the records to the producer.

    ``send`` takes a derived or re-keyed record; without a partition, the key's default partition. ``put`` and
    ``delete`` change a table at once (later reads see the change) and mark the key for its changelog.
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._records: dict[str, list[tuple[int | None, Record]]] = {}
        self._changelog = pending_changelog(app)

    def send(self, topic: str, key: bytes | None, value: bytes | None, *, partition: int | None = None,
             timestamp_ms: int | None = None) -> None:
        records = self._records.get(topic)
        if records is None:
            records = self._records[topic] = []
        records.append((partition, (key, value, timestamp_ms)))

    def put(self, table: StructTable, key: str, value: msgspec.Struct) -> None:
        raw_key = key.encode()
        table.data[raw_key] = value
        self._changelog.mark(table, raw_key, value)

    def delete(self, table: StructTable, key: str) -> None:
        raw_key = key.encode()
        if raw_key in table.data:
            del table.data[raw_key]
            self._changelog.mark(table, raw_key, None)

    async def submit(self) -> list[asyncio.Future]:
        """Hand the records to the producer, one record batch per topic partition in the order they were sent;
        the futures resolve when Kafka has acknowledged them."""
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
        return await submit_batches(producer, by_partition)


class Deliveries:
    """The worker's outboxes, delivered in the order they were filled.

    Each outbox's record batches are handed to the producer only after the previous outbox's, whichever stage
    filled them, so the records of a key land in the order the stages produced them (a compacted topic keeps the
    latest). Acknowledgements are awaited concurrently: a stage applies its next batch while the previous one is
    on its way to Kafka.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[Outbox, asyncio.Future]] = asyncio.Queue()
        self._sender: asyncio.Task | None = None

    def dispatch(self, outbox: Outbox) -> asyncio.Future:
        """Queue ``outbox``; the future resolves when Kafka has acknowledged all its records (or fails with why)."""
        delivered = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((outbox, delivered))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send())
        return delivered

    async def _send(self) -> None:
        while True:
            outbox, delivered = await self._queue.get()
            try:
                acknowledgements = await outbox.submit()
            except asyncio.CancelledError:
                delivered.cancel()
                raise
            except Exception as exc:
                delivered.set_exception(exc)
                continue
            _resolve_when_acknowledged(delivered, acknowledgements)


def _resolve_when_acknowledged(delivered: asyncio.Future, acknowledgements: list[asyncio.Future]) -> None:
    if not acknowledgements:
        delivered.set_result(None)
        return
    gathered = asyncio.gather(*acknowledgements)

    def resolve(done: asyncio.Future) -> None:
        if delivered.done():
            return
        if done.cancelled():
            delivered.cancel()
        elif done.exception() is not None:
            delivered.set_exception(done.exception())
        else:
            delivered.set_result(None)

    gathered.add_done_callback(resolve)


_deliveries: "weakref.WeakKeyDictionary[faust.App, Deliveries]" = weakref.WeakKeyDictionary()


def deliveries_of(app: faust.App) -> Deliveries:
    """The app's ``Deliveries`` (one per worker, shared by its stages)."""
    if app not in _deliveries:
        _deliveries[app] = Deliveries()
    return _deliveries[app]
