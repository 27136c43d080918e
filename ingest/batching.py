"""Concurrent sends coalesced into one Kafka batch per partition, acknowledged as a whole.

aiokafka's ``send()`` costs, per message, a partitioner call, an accumulator append and two futures; the
requests that arrive together (one event-loop iteration) can share one ``create_batch()`` / ``send_batch()``
and one acknowledgement instead.

* Each topic-partition has a lane: records wait in arrival order, and one task at a time moves them into
  batches and submits those in the same order, so a partition's records reach the broker in arrival order
  (the idempotent producer keeps it across retries).
* A lane submits its next batch once the previous one was acknowledged: the idempotent producer has one
  request in flight per partition anyway, so waiting adds little latency, and the next batch holds every
  record that arrived meanwhile instead of being closed early (larger batches, fewer to build and settle).
* A batch is acknowledged or fails as a whole: every request waiting on it gets that outcome (a failure is
  the caller's cue to spool the record). No request is answered twice or left waiting.
* The publish deadline is kept here too, with one timer per group of requests that arrived in the same
  event-loop iteration instead of one per request: a request not acknowledged in time gets ``TimeoutError``.
  Its record is then left out of the batches built after that (the caller spooled it), which avoids a
  needless duplicate; one already submitted may still land (at-least-once).
"""

from __future__ import annotations

import asyncio
import copy
import functools
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerClosed

from ingest.partitioner import KeyPartitioner
from ingest.records import OutboundRecord

_Waiting = tuple[OutboundRecord, "asyncio.Future[None]"]


@dataclass
class _Lane:
    """The records of one topic-partition not yet in a submitted batch, and the task submitting them."""

    waiting: list[_Waiting] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class PartitionBatcher:
    """``send(record)`` returns once the broker acknowledged the batch holding ``record``."""

    def __init__(self, producer: AIOKafkaProducer, *, deadline_s: float,
                 partitioner: KeyPartitioner | None = None) -> None:
        self._producer = producer
        self._deadline_s = deadline_s
        self._partitioner = partitioner or KeyPartitioner()
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._cohort: list[_Waiting] | None = None
        """The requests of this loop iteration: they share one deadline timer."""

    async def send(self, record: OutboundRecord) -> None:
        """Wait for the acknowledgement of ``record``; raise what made its batch fail, or ``TimeoutError``."""
        partitions = self._producer.client.cluster.partitions_for_topic(record.topic)
        if not partitions:
            partitions = await self._producer.partitions_for(record.topic)  # waits for the topic's metadata
        tp = (record.topic, self._partitioner.partition(record.key, sorted(partitions)))
        lane = self._lanes.get(tp)
        if lane is None:
            lane = self._lanes[tp] = _Lane()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = (record, future)
        lane.waiting.append(waiting)
        self._joined_cohort().append(waiting)
        if lane.task is None:  # runs after the requests already scheduled in this loop iteration joined
            lane.task = asyncio.create_task(self._run_lane(tp, lane))
        await future

    def _joined_cohort(self) -> list[_Waiting]:
        if self._cohort is None:
            loop = asyncio.get_running_loop()
            self._cohort = []
            loop.call_later(self._deadline_s, _fail, self._cohort,
                            TimeoutError("no acknowledgement within the publish deadline"))
            loop.call_soon(self._close_cohort)
        return self._cohort

    def _close_cohort(self) -> None:
        self._cohort = None

    async def _run_lane(self, tp: tuple[str, int], lane: _Lane) -> None:
        try:
            while lane.waiting:
                taken, lane.waiting = lane.waiting, []
                try:
                    ack = await self._submit(tp, taken)
                    if ack is not None:
                        await asyncio.wait([ack])  # the outcome goes to the waiters through _settle
                except BaseException as exc:  # cancelled (the service is stopping) or a bug: spool, never hang
                    _fail(taken, exc if isinstance(exc, KafkaError) else ProducerClosed(f"batch not sent: {exc!r}"))
                    raise
        finally:
            lane.task = None
            _fail(lane.waiting, ProducerClosed("batch not sent: the producer is stopping"))
            lane.waiting = []

    async def _submit(self, tp: tuple[str, int], waiting: list[_Waiting]) -> asyncio.Future | None:
        """Submit ``waiting`` in order, in as many batches as their size needs; settle each batch's waiters.

        Return the acknowledgement of the last batch submitted (None when none was).
        """
        topic, partition = tp
        ack = None
        while waiting := [w for w in waiting if not w[1].done()]:
            batch = self._producer.create_batch()
            count = 0
            for record, _ in waiting:  # the first record always fits, whatever its size
                if batch.append(key=record.key, value=record.value, timestamp=record.timestamp_ms,
                                headers=record.headers) is None:
                    break
                count += 1
            batch.close()  # nothing else may be appended by producer.send() to this tp
            in_batch, waiting = waiting[:count], waiting[count:]
            try:
                submitted = await self._producer.send_batch(batch, topic, partition=partition)
            except KafkaError as exc:  # not queued (producer closed, no room in time): none of it was sent
                _fail(in_batch, exc)
                continue
            submitted.add_done_callback(functools.partial(_settle, in_batch))
            ack = submitted
        return ack


def _settle(waiting: list[_Waiting], ack: asyncio.Future) -> None:
    """The batch's outcome, given to each request still waiting for it."""
    error = ProducerClosed() if ack.cancelled() else ack.exception()
    if error is not None:
        _fail(waiting, error)
        return
    for _, future in waiting:
        if not future.done():
            future.set_result(None)


def _fail(waiting: list[_Waiting], error: BaseException) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(copy.copy(error))  # a copy each: tracebacks must not pile up on one object
