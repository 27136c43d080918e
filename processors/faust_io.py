"""Small Faust plumbing shared by the stages: byte-level topics and tables, the batches in flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import faust
import msgspec

from processors.internal_codec import InternalDecoder
from schemas.partitioning import default_partition
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


class IncompatibleTableState(RuntimeError):
    """A table's changelog holds values this version cannot decode."""


class StructTable(faust.Table):
    """A changelog-backed table of msgspec Structs of one type, kept decoded in memory, keyed by string ids.

    The stages read values with ``lookup`` and write them through an ``Outbox``; the changelog record
    (MessagePack, ``processors.internal_codec``) is encoded at the next offset commit (``processors.changelog``): a
    value is decoded only once, when the table recovers from its changelog. Keys are the UTF-8 bytes of the id, so the
    changelog key is exactly the source topic's key.

    The changelog partition of a key is the default partitioner's (murmur2) choice for it: the partition of the
    source topic keyed the same way, even when a batch mixes partitions, computed from the table's own partition
    count (no producer metadata needed; Faust's ``use_partitioner`` asks the producer, which fails while it has not
    fetched the changelog topic's metadata yet).
    """

    def __init__(self, *args: Any, struct: type[msgspec.Struct], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._decoder = InternalDecoder(struct)

    def lookup(self, key: str) -> Any:
        """The value of ``key`` (a Struct of the table's type), None if there is none. Not a copy."""
        return self.data.get(key.encode())

    def _to_value(self, v: Any) -> Any:  # Faust: a changelog value being recovered
        if v is None:
            return None
        try:
            return self._decoder.decode(v)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IncompatibleTableState(
                f"table {self.name}: a changelog value cannot be read ({exc}). The state was written by an "
                "incompatible version of the processors: process the stream again under a new "
                "ONDUTY_PROCESSOR_APP_ID (fresh tables), or go back to the version that wrote it"
            ) from None

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
    """The batches a worker is handling or delivering: a rebalance, a shutdown and an offset commit wait for them.

    A batch's table writes and records reach Kafka when its outbox is delivered, after an await. If its partitions
    moved to another worker meanwhile, the new owner would start from the table changelog without them, and the
    late records would land after the new owner's, so a compacted topic's last record for a key could be stale.
    Faust awaits its ``on_partitions_revoked`` signal before the worker rejoins the group, and its
    ``on_before_shutdown`` signal before a stopping worker's agents are cancelled and its consumer leaves the
    group: the handlers wait there until no batch is in flight (at most ``timeout_s``), then commit, which writes
    the tables' pending changelog first (``processors.changelog``), so the next owner starts from every change
    made here. ``batches.take_batches`` drops the records of partitions no longer assigned, and starts no batch from a
    revocation to the next assignment or once the worker is stopping (whoever owns the partitions next replays
    them from the committed offset).

    ``exclusive`` is what an offset commit holds: no batch is in flight and none starts until it is done.
    """

    def __init__(self, app: faust.App, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.stopping = False
        """Set when the worker begins to stop: no batch is started after that."""
        self.rebalancing = False
        """Set from a revocation to the next assignment: no batch is started meanwhile."""
        self._app = app
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._exclusive = asyncio.Lock()
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_partitions_assigned.connect(self._on_partitions_assigned)
        app.on_before_shutdown.connect(self._on_before_shutdown)

    async def enter(self) -> bool:
        """A batch starts (from its first table read to its acknowledgement; ``leave`` when done): waits while an
        offset commit runs. False, and nothing entered, when no batch may start now (rebalancing, stopping)."""
        while self._exclusive.locked():  # a commit is waiting or running: let it finish
            async with self._exclusive:
                pass
        if self.stopping or self.rebalancing:
            return False
        self._count += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        self._count -= 1
        if not self._count:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Held while no batch is in flight; batches wait to start until it is released. Raises ``TimeoutError``
        when the batches in flight are not done within ``timeout_s``."""
        async with self._exclusive:
            await asyncio.wait_for(self._idle.wait(), self.timeout_s)
            yield

    async def _on_partitions_revoked(self, sender: faust.App, revoked: Any, **kwargs: Any) -> None:
        self.rebalancing = True
        await self._wait_idle("partitions revoked")
        await self._commit_now()

    async def _on_partitions_assigned(self, sender: faust.App, assigned: Any, **kwargs: Any) -> None:
        self.rebalancing = False

    async def _on_before_shutdown(self, sender: faust.App, **kwargs: Any) -> None:
        # Faust sends this before the agents are cancelled and the consumer leaves the group: a batch cancelled
        # half-way through its delivery would leave records queued in the producer, landing after the new owner's.
        self.stopping = True
        await self._wait_idle("worker stopping")
        await self._commit_now()

    async def _commit_now(self) -> None:
        """A commit of our own, whose cut holds every table change made so far.

        Faust's ``commit`` only waits when another commit is under way, and that one's cut may predate the last
        batches: their changes would stay pending and be written at this worker's next commit, after the
        partitions' next owner wrote newer values for the same keys (a later recovery would then roll those keys
        back). So wait for a commit under way, then commit.
        """
        consumer = self._app.consumer
        while await consumer.maybe_wait_for_commit_to_finish():
            pass
        await consumer.commit()  # no other commit can start in between: nothing was awaited since the check

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


def known_batches_in_flight(app: faust.App) -> BatchesInFlight | None:
    """The app's ``BatchesInFlight`` if an agent has asked for it already."""
    return _in_flight.get(app)
