"""Small Faust plumbing shared by the stages: byte-level topics and tables, batches of events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from aiokafka.partitioner import murmur2

from schemas.topics import TopicSpec

log = logging.getLogger(__name__)

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


class BatchesInFlight:
    """The batches a worker is handling or delivering; a rebalance waits for them before the worker rejoins.

    A batch's table writes and records reach Kafka when its outbox is delivered, after an await. If its partitions
    moved to another worker meanwhile, the new owner would start from the table changelog without them, and the
    late records would land after the new owner's, so a compacted topic's last record for a key could be stale.
    Faust awaits its ``on_partitions_revoked`` signal before the worker rejoins the group, and its
    ``on_before_shutdown`` signal before a stopping worker's agents are cancelled and its consumer leaves the
    group: the handlers wait there until no batch is in flight (at most ``timeout_s``). ``take_batches`` drops
    the events of partitions no longer assigned, and starts no batch from a revocation to the next assignment or
    once the worker is stopping (whoever owns the partitions next replays them from the committed offset).
    """

    def __init__(self, app: faust.App, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.stopping = False
        """Set when the worker begins to stop: no batch is started after that."""
        self.rebalancing = False
        """Set from a revocation to the next assignment: no batch is started meanwhile."""
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_partitions_assigned.connect(self._on_partitions_assigned)
        app.on_before_shutdown.connect(self._on_before_shutdown)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def _on_partitions_revoked(self, sender: faust.App, revoked: Any, **kwargs: Any) -> None:
        self.rebalancing = True
        await self._wait_idle("partitions revoked")

    async def _on_partitions_assigned(self, sender: faust.App, assigned: Any, **kwargs: Any) -> None:
        self.rebalancing = False

    async def _on_before_shutdown(self, sender: faust.App, **kwargs: Any) -> None:
        # Faust sends this before the agents are cancelled and the consumer leaves the group: a batch cancelled
        # half-way through its delivery would leave records queued in the producer, landing after the new owner's.
        self.stopping = True
        await self._wait_idle("worker stopping")

    async def _wait_idle(self, why: str) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), self.timeout_s)
        except TimeoutError:
            log.warning("%s while %d batch(es) were still being delivered after %.0f s: their records may land "
                        "after the partitions' next owner's", why, self._count, self.timeout_s)


_in_flight: "weakref.WeakKeyDictionary[faust.App, BatchesInFlight]" = weakref.WeakKeyDictionary()


def batches_in_flight(app: faust.App, settings: "ProcessorSettings") -> BatchesInFlight:
    """The app's ``BatchesInFlight`` (one per app, shared by all its agents)."""
    if app not in _in_flight:
        _in_flight[app] = BatchesInFlight(app, settings.session_timeout_ms / 2000)
    return _in_flight[app]


async def take_batches(stream: faust.StreamT, settings: "ProcessorSettings") -> "AsyncIterator[list[faust.EventT]]":
    """Batches of events whose wait grows with the load, each acknowledged only once the caller is done with it.

    Faust's ``noack_take(max, within)`` (whose loop this follows) waits a fixed ``within`` for a batch to fill. A
    short wait keeps latency low under light load but makes small batches when a backlog is being worked off (the
    buffer only fills while the wait runs), and every batch costs a few record batches and round trips however
    small it is; a long wait does the opposite. Here the wait for the next batch is ``batch_within_ms``, or
    ``batch_max_wait_ms`` while the stream is behind by at least a full batch (its consumer lag, from the
    partitions' high watermarks): light traffic flows through in milliseconds, a backlog or a replay is worked off
    in large batches.

    Faust's ``take``/``take_events`` acknowledge a batch in a ``finally`` block, i.e. also when the agent is cancelled
    half-way through it (a worker being stopped): the offsets would be committed and the rest of that batch's work
    lost for good. Here a batch is acknowledged after the loop body has finished with it, so an interrupted batch
    is replayed by the partition's next owner.
    """
    max_size = settings.batch_size
    shortest = settings.batch_within_ms / 1000
    longest = max(shortest, settings.batch_max_wait_ms / 1000)
    buffer: list[faust.EventT] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    consuming: asyncio.Future | None = None

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # the previous batch is being handled: wait for it
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found no current event")
            buffer.append(event)
            if len(buffer) >= max_size:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)  # never more than max_size in a batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to the batch buffer: %r", exc)
            await stream.crash(exc)
        return value

    in_flight = batches_in_flight(stream.app, settings)
    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged here, after the batch was handled
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))  # noqa: SLF001 (as noack_take: the stream drains in the background)
    wait = shortest
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=wait)
            if not buffer:
                continue
            consuming = asyncio.get_running_loop().create_future()
            events = list(buffer)
            try:
                # events of partitions revoked while they waited here belong to their new owner now
                assigned = stream.app.consumer.assignment()
                events = [event for event in events if event.message.tp in assigned]
                # during a rebalance or a shutdown they are left to whoever owns their partitions next
                if events and not (in_flight.stopping or in_flight.rebalancing):
                    with in_flight.batch():
                        yield events
                        for event in events:
                            await stream.ack(event)
            finally:
                buffer.clear()
                if not consuming.done():
                    consuming.set_result(None)
                buffer_full.clear()
                buffer_consumed.set()
            wait = longest if _behind(stream, events, max_size) else shortest
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)  # noqa: SLF001


def _behind(stream: faust.StreamT, events: list[faust.EventT], lag: int) -> bool:
    """Whether, after ``events``, at least ``lag`` more records wait in their partitions (together)."""
    last: dict[Any, int] = {}
    for event in events:
        last[event.message.tp] = event.message.offset
    consumer = stream.app.consumer
    waiting = 0
    for tp, offset in last.items():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            waiting += max(0, highwater - offset - 1)
    return waiting >= lag
