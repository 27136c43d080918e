"""Topics consumed in batches: the consumer buffers whole fetches, a stage takes them as lists of records.

Faust delivers every record one at a time: a message and an event object, a task per record (``wait_first``), a
queue, the stream's iterator and its sensors, about 100 µs of Python per record. Our stages work in batches
anyway, so a ``BatchTopic``'s records skip all that: the worker's consumer (``processors.consumer``) appends each
partition's share of a fetch to the topic's buffer in one step, and ``batch_agent`` runs a stage's body on lists
of records, acknowledging them through Faust's consumer once the body is done with them. Faust still commits the
offsets, tracks group membership and assignment, and recovers the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.types import Message

from processors.faust_io import batches_in_flight
from processors.settings import ProcessorSettings

log = logging.getLogger(__name__)


class BatchTopic:
    """A topic whose records the consumer buffers for a batch stage instead of passing them to Faust's streams."""

    def __init__(self, name: str, max_buffered: int) -> None:
        self.name = name
        self.max_buffered = max_buffered
        self.buffered: list[Message] = []
        self.arrived = asyncio.Event()
        """Set when records were added; cleared by whoever takes them."""
        self._taken = asyncio.Event()

    async def put(self, messages: Sequence[Message]) -> None:
        """Add one partition's fetched records; waits while the buffer is full (the fetcher stops meanwhile)."""
        self.buffered.extend(messages)
        self.arrived.set()
        while len(self.buffered) >= self.max_buffered:
            self._taken.clear()
            await self._taken.wait()

    def take(self, count: int) -> list[Message]:
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



def batch_agent(app: faust.App, topic: faust.TopicT, settings: ProcessorSettings,
                ) -> Callable[[Callable[[list[Message]], Awaitable[None]]], Callable[[list[Message]], Awaitable[None]]]:
    """Decorator: run the decorated ``async def body(messages)`` on every batch of ``topic``'s records.

    Starts once the worker has recovered its tables; an exception in the body stops the worker (crashes it), so a
    broken stage never goes on silently without its records acknowledged.
    """
    source = batch_topic(app, topic, max_buffered=4 * settings.batch_size)

    def register(body: Callable[[list[Message]], Awaitable[None]]) -> Callable[[list[Message]], Awaitable[None]]:
        @app.task
        async def run_batches() -> None:
            try:
                async for messages in take_batches(app, source, settings):
                    await body(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("batch stage on %s failed: %r", source.name, exc)
                await app.crash(exc)

        return body

    return register


async def take_batches(app: faust.App, source: BatchTopic,
                       settings: ProcessorSettings) -> "AsyncIterator[list[faust.types.Message]]":
    """Batches of a batch topic's records whose wait grows with the load, each acknowledged once the caller is done.

    The wait for the next batch to fill is ``batch_within_ms``, or ``batch_max_wait_ms`` while the partitions are
    behind by at least a full batch (their consumer lag, from their high watermarks): light traffic flows through
    in milliseconds, a backlog or a replay is worked off in large batches (every batch costs a few record batches
    and round trips however small it is).

    A batch is acknowledged after the loop body has finished with it, never when the body was interrupted (a worker
    being stopped), so an interrupted batch is replayed by the partition's next owner. The records of partitions
    no longer assigned are dropped, and no batch is started from a revocation to the next assignment or once the
    worker is stopping (whoever owns the partitions next replays them from the committed offset).
    """
    max_size = settings.batch_size
    shortest = settings.batch_within_ms / 1000
    longest = max(shortest, settings.batch_max_wait_ms / 1000)
    in_flight = batches_in_flight(app, settings)
    consumer = app.consumer
    wait = shortest
    while not app.should_stop:
        if not source.buffered:
            await source.arrived.wait()
        if len(source.buffered) < max_size:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_filled(source, max_size), wait)
        messages = source.take(max_size)
        if not messages or in_flight.stopping or in_flight.rebalancing:
            continue
        assigned = consumer.assignment()
        messages = [message for message in messages if message.tp in assigned]
        if not messages:
            continue
        async with in_flight.batch():
            yield messages
            for message in messages:
                consumer.ack(message)
        inbound = app.monitor.stream_inbound_time  # Faust's livelock check: these partitions are being processed
        now = time.monotonic()
        for tp in {message.tp for message in messages}:
            inbound[tp] = now
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
