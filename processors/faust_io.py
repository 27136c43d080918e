"""Small Faust plumbing shared by the stages: byte-level topics and tables, batches of events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from aiokafka.partitioner import murmur2

from schemas import encode
from schemas.topics import TopicSpec

if TYPE_CHECKING:
    from processors.outbox import Outbox
    from processors.settings import ProcessorSettings


def raw_topic(app: faust.App, name: str, partitions: int, *, internal: bool = False,
              config: dict[str, str] | None = None) -> faust.TopicT:
    """A topic whose keys and values are plain bytes: the stages encode and decode with msgspec themselves."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=partitions, internal=internal, config=config,
    )


def output_topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    """A derived topic declared with its documented partitions and cleanup policy."""
    return raw_topic(app, spec.name, spec.partitions, config=spec.configs())


@lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in the Java client and aiokafka) picks for ``key``.

    The hash is remembered per key: the same agent and call-center ids recur in every batch.
    """
    return _key_hash(key) % partitions


class KeyPartitionedTable(faust.Table):
    """A table whose changelog partition is the default partitioner's (murmur2) choice for the whole key.

    The same partition the producer picks for a source record with that key, computed from the table's own
    partition count: no producer metadata needed (Faust's ``use_partitioner`` asks the producer, which fails
    while it has not fetched the changelog topic's metadata yet), and a batch may mix partitions.
    """

    def partition_key(self, key: bytes) -> bytes:
        return key

    def partition_for_key(self, key: Any) -> int | None:
        return default_partition(self.partition_key(key), self.partitions)


class AgentPrefixedTable(KeyPartitionedTable):
    """A table of keys ``<id>#<suffix>`` whose changelog partition is the partition of ``<id>`` alone.

    Lets one agent (or call center) own many small records, e.g. one per hour of history or one per member, that
    stay co-partitioned with the topic keyed by that id.
    """

    SEPARATOR = b"#"

    def partition_key(self, key: bytes) -> bytes:
        return key.split(self.SEPARATOR, 1)[0]


def byte_table(app: faust.App, name: str, partitions: int, help: str, *, use_partitioner: bool = True) -> faust.Table:
    """A changelog-backed table of msgspec-encoded values, keyed by the UTF-8 bytes of a string id.

    Keys are bytes so that the changelog key is exactly the source topic's key (Faust would JSON-quote a str key).
    By default the changelog partition is the key's own partition (``KeyPartitionedTable``): the partition of the
    source topic keyed the same way, even when a batch mixes partitions. With ``use_partitioner=False`` it is the
    partition of the event being handled (Faust's default): only for tables written one event at a time.
    """
    table_class = KeyPartitionedTable if use_partitioner else faust.Table
    return _add_table(app, table_class, name, partitions, help)


def agent_prefixed_table(app: faust.App, name: str, partitions: int, help: str) -> faust.Table:
    """An ``AgentPrefixedTable`` of bytes keys and msgspec-encoded values."""
    return _add_table(app, AgentPrefixedTable, name, partitions, help)


def _add_table(app: faust.App, table_class: type, name: str, partitions: int, help: str) -> faust.Table:
    table = table_class(
        app, name=name, default=None, beacon=app.tables.beacon, partitions=partitions, help=help,
        key_type=bytes, value_type=bytes,
    )
    return app.tables.add(table)


class TableCodec:
    """Decode/encode one Struct type as a table value, with decoders built once."""

    def __init__(self, struct: type) -> None:
        self._decoder = msgspec.json.Decoder(struct)

    def get(self, table: faust.Table, key: str) -> Any:
        raw = table.get(key.encode())
        return None if raw is None else self._decoder.decode(raw)

    def decode(self, raw: bytes) -> Any:
        return self._decoder.decode(raw)

    @staticmethod
    def put(outbox: "Outbox", table: faust.Table, key: str, value: msgspec.Struct) -> None:
        outbox.put(table, key.encode(), encode(value))


async def take_batches(stream: faust.StreamT, settings: "ProcessorSettings") -> "AsyncIterator[list[faust.EventT]]":
    """Batches of events, each acknowledged only once the caller is done with it.

    Faust's ``take``/``take_events`` acknowledge a batch in a ``finally`` block, i.e. also when the agent is cancelled
    half-way through it (a worker being stopped): the offsets would be committed and the rest of that batch's work
    lost for good. Here a batch is acknowledged after the loop body has finished with it, so an interrupted batch
    is replayed by the partition's next owner.
    """
    async for events in stream.noack_take(settings.batch_size, within=settings.batch_within_s):
        yield events
        for event in events:
            await stream.ack(event)
