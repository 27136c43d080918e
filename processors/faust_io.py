"""Small Faust plumbing shared by the stages: byte-level topics and tables, batches of events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from aiokafka.partitioner import murmur2

from schemas.topics import TopicSpec

if TYPE_CHECKING:
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


class StructTable(faust.Table):
    """A changelog-backed table of msgspec Structs of one type, kept decoded in memory, keyed by string ids.

    The stages read values with ``lookup`` and write them through an ``Outbox``, which encodes the changelog record
    (JSON, the same bytes as the Struct's wire form): a value is decoded only once, when the table recovers from
    its changelog. Keys are the UTF-8 bytes of the id, so the changelog key is exactly the source topic's key.

    The changelog partition of a key is the default partitioner's (murmur2) choice for it: the partition of the
    source topic keyed the same way, even when a batch mixes partitions, computed from the table's own partition
    count (no producer metadata needed; Faust's ``use_partitioner`` asks the producer, which fails while it has not
    fetched the changelog topic's metadata yet).
    """

    def __init__(self, *args: Any, struct: type[msgspec.Struct], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.struct = struct
        self._decoder = msgspec.json.Decoder(struct)

    def lookup(self, key: str) -> Any:
        """The value of ``key`` (a Struct of the table's type), None if there is none. Not a copy."""
        return self.data.get(key.encode())

    def _to_value(self, v: Any) -> Any:  # Faust: a changelog value being recovered
        return None if v is None else self._decoder.decode(v)

    def partition_key(self, key: bytes) -> bytes:
        return key

    def partition_for_key(self, key: Any) -> int | None:
        return default_partition(self.partition_key(key), self.partitions)


class AgentPrefixedTable(StructTable):
    """A table of keys ``<id>#<suffix>`` whose changelog partition is the partition of ``<id>`` alone.

    Lets one agent (or call center) own many small records, e.g. one per hour of history or one per member, that
    stay co-partitioned with the topic keyed by that id.
    """

    SEPARATOR = b"#"

    def partition_key(self, key: bytes) -> bytes:
        return key.split(self.SEPARATOR, 1)[0]


def struct_table(app: faust.App, name: str, struct: type[msgspec.Struct], partitions: int, help: str, *,
                 prefixed: bool = False) -> StructTable:
    """A ``StructTable`` (``prefixed``: an ``AgentPrefixedTable``) added to the app."""
    table = (AgentPrefixedTable if prefixed else StructTable)(
        app, name=name, default=None, beacon=app.tables.beacon, partitions=partitions, help=help,
        key_type=bytes, value_type=bytes, struct=struct,
    )
    return app.tables.add(table)


async def take_batches(stream: faust.StreamT, settings: "ProcessorSettings") -> "AsyncIterator[list[faust.EventT]]":
    """Batches of events, each acknowledged only once the caller is done with it.

    Faust's ``take``/``take_events`` acknowledge a batch in a ``finally`` block, i.e. also when the agent is cancelled
    half-way through it (a worker being stopped): the offsets would be committed and the rest of that batch's work
    lost for good. Here a batch is acknowledged after the loop body has finished with it, so an interrupted batch
    is replayed by the partition's next owner.
    """
    async for events in stream.noack_take(settings.batch_size, within=settings.batch_within_ms / 1000):
        yield events
        for event in events:
            await stream.ack(event)
