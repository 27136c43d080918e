"""Concurrent sends coalesced into one Kafka batch per partition, acknowledged as a whole.

aiokafka's ``send()`` costs, per message, a partitioner call, an accumulator append and two futures; the
requests that arrive together (one event-loop iteration) can share one ``create_batch()`` / ``send_batch()``
and one acknowledgement instead.

* Each topic-partition has a lane: records wait in arrival order, and at most one batch of the lane is on its
  way to the broker, so a partition's records reach the broker in arrival order (the idempotent producer keeps
  it across retries).
* A lane submits its next batch once the previous one was acknowledged: the idempotent producer has one
  request in flight per partition anyway, so waiting adds little latency, and the next batch holds every
  record that arrived meanwhile instead of being closed early (larger batches, fewer to build and settle).
  Records that do not fit in one batch wait for the next.
* No lane submits while batches of ours are in flight to its broker: aiokafka sends one produce request per
  broker at a time, so a batch queued meanwhile would only wait in its accumulator, closed early, and wake
  its sender for nothing. The lanes that became ready meanwhile are submitted together once the broker's
  last batch in flight was settled, and go in the next produce request as one round (fewer, fuller batches
  per request: about 3% less CPU per request for the whole service at 64 connections than lanes that
  submitted at once, ``docs/PERFORMANCE.md``).
* Lanes ready to submit are submitted together by one task, after the requests already scheduled in this
  event-loop iteration joined; an acknowledgement makes its lane ready again (a callback, no task per lane).
* The ready lanes of a broker go to it as one produce request written from here when it can take one now
  (``ingest.produce_rounds``: without aiokafka's sender task, about a quarter less CPU per round, which is most
  of a request's cost at low rates); otherwise each lane's batch goes into aiokafka's accumulator (below).
* A batch is acknowledged or fails as a whole: every request waiting on it gets that outcome (a failure is
  the caller's cue to spool the record). No request is answered twice or left waiting.
* A batch is filled through aiokafka's C record-batch builder (``fill_batch``, ``onduty.record_batches``),
  without the Python ``BatchBuilder.append`` around it.
* A closed batch goes straight into aiokafka's accumulator when nothing stands in the way (``_Accumulator``,
  the one place here that touches aiokafka's internals besides ``onduty.record_batches``): ``send_batch()``'s
  two coroutines, metadata and partition checks, per-call ``TopicPartition`` and ``asyncio.shield`` cost about
  as much as building the batch, and
  the shield's callback adds one event-loop iteration before the acknowledgement reaches the requests.
* The publish deadline is kept here too, with one timer per group of requests that arrived in the same
  event-loop iteration instead of one per request: a request not acknowledged in time gets ``TimeoutError``.
  Its record is then left out of the batches built after that (the caller spooled it), which avoids a
  needless duplicate; one already submitted may still land (at-least-once).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerClosed
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition

from ingest.partitioner import KeyPartitioner
from ingest.produce_rounds import DirectRounds
from ingest.records import OutboundRecord
from onduty.record_batches import append_record

log = logging.getLogger(__name__)

_Waiting = tuple[OutboundRecord, "asyncio.Future[None]"]
_KEYS_KEPT = 1 << 16


class _Accumulator:
    """aiokafka's ``MessageAccumulator`` (aiokafka 0.14 internals), for queueing a closed batch without
    ``send_batch()``: exactly what ``send_batch()`` ends with once its checks pass (``add_batch`` ->
    ``_append_batch``), returning the batch's own acknowledgement future instead of a shield around it.

    Used only when ``send_batch()`` would queue the batch at once: the accumulator is neither closed nor
    failed and holds no batch of that partition waiting for the sender (``send_batch()`` would wait for its
    drain; the caller then uses ``send_batch()``). Partitions come from the cluster metadata already, and
    the producer is not transactional. ``tests/unit/test_ingest_batching.py`` checks these internals against
    the installed aiokafka; a producer without them (a test double, another version) gets ``None`` from
    ``of`` and always goes through ``send_batch()``.
    """

    def __init__(self, accumulator: object) -> None:
        self._accumulator = accumulator

    @classmethod
    def of(cls, producer: object) -> "_Accumulator | None":
        accumulator = getattr(producer, "_message_accumulator", None)
        needed = ("_append_batch", "_batches", "_closed", "_exception")
        if accumulator is None or not all(hasattr(accumulator, name) for name in needed):
            return None
        return cls(accumulator)

    def queue(self, batch: object, tp: TopicPartition) -> asyncio.Future | None:
        """Queue ``batch`` for ``tp`` now and return its acknowledgement; ``None`` when ``send_batch()`` must."""
        accumulator = self._accumulator
        if accumulator._closed or accumulator._exception is not None or accumulator._batches.get(tp):
            return None
        return accumulator._append_batch(batch, tp).future


@dataclass
class _Lane:
    """The records of one topic-partition not yet in a submitted batch."""

    tp: TopicPartition
    waiting: list[_Waiting] = field(default_factory=list)
    busy: bool = False
    """True from the moment the lane is ready to submit until its batch was acknowledged (or failed)."""


class PartitionBatcher:
    """``send(record)`` returns once the broker acknowledged the batch holding ``record``."""

    def __init__(self, producer: AIOKafkaProducer, *, deadline_s: float,
                 partitioner: KeyPartitioner | None = None) -> None:
        self._producer = producer
        self._accumulator = _Accumulator.of(producer)
        self._rounds = DirectRounds.of(producer)
        self._deadline_s = deadline_s
        self._partitioner = partitioner or KeyPartitioner()
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._ready: list[_Lane] = []
        self._in_flight: dict[object, int] = {}
        """Per broker (leader node id), how many of our batches were queued and are not yet settled."""
        self._deferred: dict[object, list[_Lane]] = {}
        """Per broker with batches in flight, the lanes ready to submit once they are all settled."""
        self._submitter: asyncio.Task[None] | None = None
        self._cohort: list[asyncio.Future[None]] | None = None
        """The requests of this loop iteration: they share one deadline timer (which holds no record)."""
        self._partitions: dict[str, list[int]] = {}
        """Sorted partition ids per topic, forgotten on every metadata update (aiokafka builds a new set per call)."""
        self._lanes_by_key: dict[str, dict[bytes, _Lane]] = {}
        """Per topic, the lane of each key seen (agent ids recur): one lookup instead of hashing the key and
        finding its partition's lane per record. Forgotten with the partitions, and when it grows past
        ``_KEYS_KEPT`` keys."""
        self._awaiting_partitions: dict[str, list[_Waiting]] = {}
        """Per topic whose partitions are being fetched, the records that wait for them, in arrival order."""
        self._fetches: set[asyncio.Future[None]] = set()
        producer.client.cluster.add_listener(self._metadata_updated)

    async def send(self, record: OutboundRecord) -> None:
        """Wait for the acknowledgement of ``record``; raise what made its batch fail, or ``TimeoutError``."""
        await self.enqueue(record)

    def enqueue(self, record: OutboundRecord) -> Awaitable[None]:
        """``send`` without its coroutine: queue ``record`` now, return what to await for its acknowledgement
        (the request's own future: one frame less per request)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cohort = self._cohort
        if cohort is None:
            cohort = self._new_cohort()
        cohort.append(future)  # the deadline holds from now, whether or not the partitions are known yet
        lanes = self._lanes_by_key.get(record.topic)
        lane = lanes.get(record.key) if lanes is not None else None
        if lane is None:
            partitions = self._partitions.get(record.topic) or self._known_partitions(record.topic)
            if partitions is None:
                self._await_partitions(record, future)
                return future
            lane = self._lane_of(record, partitions)
        self._queue(lane, record, future)
        return future

    def _queue(self, lane: _Lane, record: OutboundRecord, future: asyncio.Future[None]) -> None:
        lane.waiting.append((record, future))
        if not lane.busy:
            self._make_ready(lane)

    def _known_partitions(self, topic: str) -> list[int] | None:
        """The topic's partitions from the metadata the producer has (remembered); None when it has none for
        the topic, or when requests of the topic already wait for them (they go first: arrival order)."""
        partitions = self._producer.client.cluster.partitions_for_topic(topic)
        if not partitions or topic in self._awaiting_partitions:
            return None
        self._partitions[topic] = ordered = sorted(partitions)
        return ordered

    def _await_partitions(self, record: OutboundRecord, future: asyncio.Future[None]) -> None:
        """Queue ``record`` once its topic's partitions are known: aiokafka may start without the topic's
        metadata and then waits for it up to its request timeout. The records that arrive meanwhile wait in
        arrival order behind one fetch; one past its deadline is left out (the caller spooled it)."""
        waiting = self._awaiting_partitions.get(record.topic)
        if waiting is None:
            waiting = self._awaiting_partitions[record.topic] = []
            fetch = asyncio.ensure_future(self._fetch_partitions(record.topic))
            self._fetches.add(fetch)
            fetch.add_done_callback(self._fetches.discard)
        waiting.append((record, future))

    async def _fetch_partitions(self, topic: str) -> None:
        try:
            partitions = await self._producer.partitions_for(topic)  # waits for the topic's metadata
        except BaseException as exc:  # no metadata in time, or the service is stopping: those waiting spool
            error = exc if isinstance(exc, KafkaError) else ProducerClosed(f"topic metadata not fetched: {exc!r}")
            _fail(self._awaiting_partitions.pop(topic, []), error)
            if not isinstance(exc, Exception):
                raise
            return
        waiting = self._awaiting_partitions.pop(topic, [])
        self._partitions[topic] = ordered = sorted(partitions)
        for record, future in waiting:
            if not future.done():
                self._queue(self._lane_of(record, ordered), record, future)

    def _lane_of(self, record: OutboundRecord, partitions: list[int]) -> _Lane:
        """The lane of ``record``'s partition (created on first use), remembered for its key."""
        tp = (record.topic, self._partitioner.partition(record.key, partitions))
        lane = self._lanes.get(tp)
        if lane is None:
            lane = self._lanes[tp] = _Lane(TopicPartition(*tp))
        if record.key is not None:  # a record without key goes to a random partition each time
            lanes = self._lanes_by_key.setdefault(record.topic, {})
            if len(lanes) >= _KEYS_KEPT:
                lanes.clear()
            lanes[record.key] = lane
        return lane

    def _metadata_updated(self, cluster: object) -> None:
        self._partitions.clear()
        self._lanes_by_key.clear()  # a partition count may have changed

    def _new_cohort(self) -> list[asyncio.Future[None]]:
        """The cohort of this loop iteration, with its deadline timer; closed once the iteration ends."""
        loop = asyncio.get_running_loop()
        self._cohort = cohort = []
        loop.call_later(self._deadline_s, _expire, cohort)
        loop.call_soon(self._close_cohort)
        return cohort

    def _close_cohort(self) -> None:
        self._cohort = None

    def _make_ready(self, lane: _Lane) -> None:
        lane.busy = True
        node = self._leader_of(lane)
        if self._in_flight.get(node):  # its broker has a produce request of ours on the way: join the next round
            self._deferred.setdefault(node, []).append(lane)
            return
        self._ready.append(lane)
        self._start_submitter()

    def _leader_of(self, lane: _Lane) -> object:
        """The broker leading the lane's partition (``None`` or -1 while unknown: such lanes share one round)."""
        return self._producer.client.cluster.leader_for_partition(lane.tp)

    def _start_submitter(self) -> None:
        if self._submitter is None:  # runs after the requests already scheduled in this loop iteration joined
            self._submitter = asyncio.create_task(self._submit_ready())

    async def _submit_ready(self) -> None:
        lane = None
        try:
            while self._ready:
                if self._rounds is not None:
                    self._send_rounds()
                while self._ready:
                    lane = self._ready.pop(0)
                    await self._submit(lane)
                    lane = None
        except BaseException as exc:  # cancelled (the service is stopping) or a bug: spool, never hang
            error = exc if isinstance(exc, KafkaError) else ProducerClosed(f"batch not sent: {exc!r}")
            for stopped in ([lane] if lane is not None else []) + self._ready:
                _fail(stopped.waiting, error)
                stopped.waiting, stopped.busy = [], False
            self._ready = []
            raise
        finally:
            self._submitter = None

    def _send_rounds(self) -> None:
        """Send the ready lanes of each broker that can take a direct round now as one produce request
        (``ingest.produce_rounds``); the others stay ready, for ``_submit``."""
        ready, self._ready = self._ready, []
        by_node: dict[object, list[_Lane]] = {}
        for lane in ready:
            by_node.setdefault(self._leader_of(lane), []).append(lane)
        rest = []
        for node, lanes in by_node.items():
            if self._rounds.can_send(node, [lane.tp for lane in lanes]):
                self._send_round(node, lanes)
            else:
                rest.extend(lanes)
        self._ready[:0] = rest  # before any lane made ready again meanwhile

    def _send_round(self, node: object, lanes: list[_Lane]) -> None:
        """One batch per lane, the oldest waiting records of each, sent together to ``node``."""
        builders, taken = {}, []
        for lane in lanes:
            next_batch = self._next_batch(lane)
            if next_batch is not None:
                builders[lane.tp], in_batch = next_batch
                taken.append((lane, in_batch))
        if not taken:
            return
        try:
            acks = self._rounds.send(node, builders)
        except Exception as exc:  # a bug: those requests spool, the lanes go on
            log.exception("produce round not sent; its records go to the spool")
            for lane, in_batch in taken:
                self._not_sent(lane, in_batch, ProducerClosed(f"batch not sent: {exc!r}"))
            return
        for (lane, in_batch), ack in zip(taken, acks):
            self._wait_for(ack, lane, in_batch, node)

    def _next_batch(self, lane: _Lane) -> tuple[BatchBuilder, list[_Waiting]] | None:
        """A closed batch of the lane's oldest waiting records, as many as it holds (the rest wait for its
        acknowledgement), and those records; ``None``, the lane idle, when none waits any more (a request past
        its deadline was spooled)."""
        waiting = [w for w in lane.waiting if not w[1].done()]
        if not waiting:
            lane.waiting, lane.busy = [], False
            return None
        batch = self._producer.create_batch()
        count = fill_batch(batch, waiting)
        batch.close()  # nothing else may be appended by producer.send() to this tp
        lane.waiting = waiting[count:]
        return batch, waiting[:count]

    async def _submit(self, lane: _Lane) -> None:
        """Submit the lane's next batch into aiokafka's accumulator (``_next_batch``)."""
        next_batch = self._next_batch(lane)
        if next_batch is None:
            return
        batch, in_batch = next_batch
        try:
            ack = self._accumulator.queue(batch, lane.tp) if self._accumulator is not None else None
            if ack is None:
                ack = await self._producer.send_batch(batch, lane.tp.topic, partition=lane.tp.partition)
        except KafkaError as exc:  # not queued (producer closed, no room in time): none of it was sent
            self._not_sent(lane, in_batch, exc)
            return
        except BaseException as exc:
            _fail(in_batch, ProducerClosed(f"batch not sent: {exc!r}"))
            raise
        self._wait_for(ack, lane, in_batch, self._leader_of(lane))

    def _wait_for(self, ack: asyncio.Future, lane: _Lane, in_batch: list[_Waiting], node: object) -> None:
        """The lane's batch is on its way to ``node``: its records get ``ack`` 's outcome (``_acknowledged``)."""
        self._in_flight[node] = self._in_flight.get(node, 0) + 1
        ack.add_done_callback(functools.partial(self._acknowledged, lane, in_batch, node))

    def _not_sent(self, lane: _Lane, in_batch: list[_Waiting], error: BaseException) -> None:
        """None of the lane's batch was sent: its records fail (they spool), the lane goes on."""
        _fail(in_batch, error)
        self._settled(lane)

    def _acknowledged(self, lane: _Lane, in_batch: list[_Waiting], node: object, ack: asyncio.Future) -> None:
        _settle(in_batch, ack)
        self._in_flight[node] -= 1
        self._settled(lane)
        if not self._in_flight[node]:  # the broker's round is over: the lanes that waited for it go together
            deferred = self._deferred.pop(node, None)
            if deferred:
                self._ready.extend(deferred)
                self._start_submitter()

    def _settled(self, lane: _Lane) -> None:
        lane.busy = False
        if lane.waiting:
            self._make_ready(lane)


def fill_batch(batch: BatchBuilder, waiting: list[_Waiting]) -> int:
    """Append the records of ``waiting`` to the new ``batch`` in order while they fit (through aiokafka's C
    record-batch builder, ``onduty.record_batches``); return how many did (the first always fits, whatever its
    size)."""
    count = 0
    for record, _ in waiting:
        if not append_record(batch, record.key, record.value, record.timestamp_ms, record.headers):
            break
        count += 1
    return count


def _settle(waiting: list[_Waiting], ack: asyncio.Future) -> None:
    """The batch's outcome, given to each request still waiting for it."""
    error = ProducerClosed() if ack.cancelled() else ack.exception()
    if error is not None:
        _fail(waiting, error)
        return
    for _, future in waiting:
        if not future.done():
            future.set_result(None)


def _expire(cohort: list[asyncio.Future[None]]) -> None:
    """The publish deadline of ``cohort`` passed: whoever still waits gets ``TimeoutError``."""
    for future in cohort:
        if not future.done():
            future.set_exception(TimeoutError("no acknowledgement within the publish deadline"))


def _fail(waiting: list[_Waiting], error: BaseException) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(copy.copy(error))  # a copy each: tracebacks must not pile up on one object
