"""Topics consumed in batches: the consumer buffers whole fetches, a stage takes them as lists of records.

Faust delivers every record one at a time: a message and an event object, a task per record (``wait_first``), a
queue, the stream's iterator and its sensors, about 100 µs of Python per record. Our stages work in batches
anyway, so a ``BatchTopic``'s records skip all that: the worker's consumer (``processors.consumer``) appends each
partition's share of a fetch to the topic's buffer in one step, and ``batch_agent`` applies a stage to lists of
records, acknowledging them through Faust's consumer once Kafka has the records the stage produced from them.
Faust still commits the offsets, tracks group membership and assignment, and recovers the tables.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import faust
from faust.types import TP

from processors.changelog import pending_changelog
from processors.faust_io import BatchesInFlight, batches_in_flight
from processors.outbox import Outbox, deliveries_of
from processors.settings import ProcessorSettings

log = logging.getLogger(__name__)


class BatchRecord:
    """One fetched record of a batch topic, as the stages and the acknowledgement read it.

    Faust's ``Message`` sets some twenty fields for its streams' bookkeeping on every record; a batch stage reads
    these few (``Consumer.ack_batch`` the position and ``acked``).
    """

    __slots__ = ("tp", "topic", "partition", "offset", "timestamp_ms", "key", "value", "headers", "acked")

    def __init__(self, tp: TP, offset: int, timestamp_ms: int | None, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self.tp = tp
        self.topic: str = tp.topic
        self.partition: int = tp.partition
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.key = key
        self.value = value
        self.headers = headers
        self.acked = False

    def __repr__(self) -> str:
        return f"<BatchRecord {self.topic}[{self.partition}]@{self.offset}>"


BatchApply = Callable[[list[BatchRecord], Outbox], None]


class BatchTopic:
    """A topic whose records the consumer buffers for a batch stage instead of passing them to Faust's streams."""

    def __init__(self, name: str, max_buffered: int) -> None:
        self.name = name
        self.max_buffered = max_buffered
        self.buffered: list[BatchRecord] = []
        self.arrived = asyncio.Event()
        """Set when records were added; cleared by whoever takes them."""
        self._taken = asyncio.Event()
        self.apply: BatchApply | None = None
        """The stage's ``apply(messages, outbox)`` (``batch_agent``); tools may call it directly (bench.stages)."""

    async def put(self, messages: Sequence[BatchRecord]) -> None:
        """Add one partition's fetched records; waits while the buffer is full (the fetcher stops meanwhile)."""
        self.buffered.extend(messages)
        self.arrived.set()
        while len(self.buffered) >= self.max_buffered:
            self._taken.clear()
            await self._taken.wait()

    def take(self, count: int) -> list[BatchRecord]:
        """Up to ``count`` records, oldest first."""
        taken, self.buffered = self.buffered[:count], self.buffered[count:]
        if not self.buffered:
            self.arrived.clear()
        self._taken.set()
        return taken

    def clear(self) -> None:
        """Forget what is buffered (a rebalance: the partitions' next owners start from the committed offsets)."""
        self.take(len(self.buffered))


_batch_topics: "weakref.WeakKeyDictionary[faust.App, dict[str, BatchTopic]]" = weakref.WeakKeyDictionary()


def batch_topics_of(app: faust.App) -> dict[str, BatchTopic]:
    """The app's batch topics by name."""
    return _batch_topics.get(app, {})


def batch_topic(app: faust.App, topic: faust.TopicT, max_buffered: int) -> BatchTopic:
    """Subscribe the app to ``topic`` and have its records buffered for a batch stage."""
    name = topic.get_topic_name()
    topics = _batch_topics.setdefault(app, {})
    if name in topics:
        raise ValueError(f"topic {name} already has a batch stage")
    app.topics.add(topic)  # subscribed and acknowledged like an agent's topic, co-partitioned with the tables
    topics[name] = BatchTopic(name, max_buffered)

    async def forget_buffered(sender: faust.App, partitions: Any, **kwargs: Any) -> None:
        topics[name].clear()

    app.on_partitions_revoked.connect(forget_buffered)
    app.on_partitions_assigned.connect(forget_buffered)
    return topics[name]



UNDELIVERED_BATCHES = 2
"""Batches of one stage applied but not yet acknowledged by Kafka before the stage waits for the oldest."""


def batch_agent(app: faust.App, topic: faust.TopicT, settings: ProcessorSettings) -> Callable[[BatchApply], BatchApply]:
    """Decorator: apply the decorated ``apply(messages, outbox)`` to every batch of ``topic``'s records.

    ``apply`` reads and writes tables and fills the outbox, synchronously. The outbox is then delivered in order
    with every other stage's (``Deliveries``) while the next batch is applied, and the batch's records are
    acknowledged once Kafka has all of the outbox's records. Starts once the worker has recovered its tables.
    A batch that fails to apply or to deliver stops the worker (crashes it) and no table change is written to a
    changelog after it (``PendingChangelog.poison``): the partitions' next owner replays from the last commit.
    """
    source = batch_topic(app, topic, max_buffered=4 * settings.batch_size)

    def register(apply: BatchApply) -> BatchApply:
        source.apply = apply

        @app.task
        async def run_batches() -> None:
            in_flight = batches_in_flight(app, settings)
            deliveries = deliveries_of(app)
            undelivered: collections.deque[asyncio.Task] = collections.deque()
            try:
                async for messages in take_batches(app, source, settings):
                    if not await in_flight.enter():
                        continue
                    try:
                        assigned = app.consumer.assignment()
                        # records of partitions revoked while they waited here belong to their new owner now
                        messages = [message for message in messages if message.tp in assigned]
                        outbox = Outbox(app)
                        apply(messages, outbox)
                        delivered = deliveries.dispatch(outbox)
                    except BaseException:
                        in_flight.leave()
                        raise
                    undelivered.append(asyncio.ensure_future(_acknowledge(app, in_flight, delivered, messages)))
                    while undelivered and (undelivered[0].done() or len(undelivered) > UNDELIVERED_BATCHES):
                        await undelivered.popleft()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await _failed(app, source.name, exc)

        return apply

    return register


async def _acknowledge(app: faust.App, in_flight: BatchesInFlight, delivered: asyncio.Future,
                       messages: list[BatchRecord]) -> None:
    try:
        try:
            await delivered
        except asyncio.CancelledError:
            pending_changelog(app).poison(asyncio.CancelledError("delivery cancelled"))
            raise
        except Exception as exc:
            await _failed(app, messages[0].topic if messages else "?", exc)
            return
        app.consumer.ack_batch(messages)
        inbound = app.monitor.stream_inbound_time  # Faust's livelock check: these partitions are being processed
        now = time.monotonic()
        for tp in {message.tp for message in messages}:
            inbound[tp] = now
    finally:
        in_flight.leave()


async def _failed(app: faust.App, topic: str, exc: Exception) -> None:
    pending_changelog(app).poison(exc)
    log.exception("batch stage on %s failed, the worker stops: %r", topic, exc, exc_info=exc)
    await app.crash(exc)


async def take_batches(app: faust.App, source: BatchTopic, settings: ProcessorSettings) -> AsyncIterator[list[BatchRecord]]:
    """Batches of a batch topic's records, taken with a wait that grows with the load.

    The wait for the next batch to fill is ``batch_within_ms``, or ``batch_max_wait_ms`` while the partitions are
    behind by at least a full batch (their consumer lag, from their high watermarks): light traffic flows through
    in milliseconds, a backlog or a replay is worked off in large batches (every batch costs a few record batches
    and round trips however small it is).
    """
    max_size = settings.batch_size
    shortest = settings.batch_within_ms / 1000
    longest = max(shortest, settings.batch_max_wait_ms / 1000)
    consumer = app.consumer
    wait = shortest
    while not app.should_stop:
        if not source.buffered:
            await source.arrived.wait()
        if len(source.buffered) < max_size:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_filled(source, max_size), wait)
        messages = source.take(max_size)
        if not messages:
            continue
        yield messages
        wait = longest if _behind(consumer, messages, max_size) else shortest


async def _filled(source: BatchTopic, size: int) -> None:
    while len(source.buffered) < size:
        source.arrived.clear()
        await source.arrived.wait()


def _behind(consumer: Any, messages: list[Any], lag: int) -> bool:
    """Whether, after ``messages``, at least ``lag`` more records wait in their partitions (together)."""
    last: dict[Any, int] = {}
    for message in messages:
        last[message.tp] = message.offset
    waiting = 0
    for tp, offset in last.items():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            waiting += max(0, highwater - offset - 1)
    return waiting >= lag
