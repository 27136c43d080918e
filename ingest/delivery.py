"""Publish-or-spool: every accepted event reaches Kafka, directly or through the durable spool.

* While Kafka answers and the spool is empty, a record is sent and the request waits for the broker's
  acknowledgement, up to the publish deadline (kept by the publisher, which shares one timer among the
  requests that arrive together).
* When the deadline passes or the send fails, the record is appended to the spool (fsync'd) instead, and
  from then on every record goes to the spool until the drainer has emptied it: arrival order is kept.
* The drainer sends spooled records in arrival order, commits the spool cursor only after Kafka
  acknowledged them, and switches back to direct publishing once the spool is empty. A record Kafka refuses
  for good (``NEVER_ACCEPTED``: too large for the topic, say) is set aside in the spool's ``undeliverable/``
  directory, so the records behind it still go.

A send that timed out may still be delivered by the producer later, and a crash between Kafka's
acknowledgement and the cursor commit replays a batch: events may be duplicated across a failure
(the ``onduty-dedup-id`` header identifies them), never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ingest.errors import SpoolCorrupt
from ingest.metrics import IngestMetrics
from ingest.publisher import NEEDS_NEW_PRODUCER, NEVER_ACCEPTED, PUBLISH_ERRORS, Publisher
from ingest.records import OutboundRecord
from ingest.spool import Spool

log = logging.getLogger(__name__)

PUBLISHED = "published"
SPOOLED = "spooled"


class Backoff:
    """Exponential delay between retries, reset after a success."""

    def __init__(self, first_s: float = 0.1, max_s: float = 2.0) -> None:
        self.first_s, self.max_s, self.next_s = first_s, max_s, first_s

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_s)
        self.next_s = min(self.max_s, self.next_s * 2)

    def reset(self) -> None:
        self.next_s = self.first_s


class Delivery:
    """Decides, per record, between Kafka and the spool; runs the drainer."""

    def __init__(self, publisher: Publisher, spool: Spool, metrics: IngestMetrics, *, deadline_s: float,
                 batch_size: int = 500) -> None:
        self.publisher = publisher
        self.spool = spool
        self.metrics = metrics
        self.deadline_s = deadline_s
        self.batch_size = batch_size
        self.kafka_up = False
        """True while records go straight to Kafka; False while they go to the spool."""

    async def keep(self, record: OutboundRecord) -> str:
        """Return ``PUBLISHED`` or ``SPOOLED`` once the record is durable; raise ``SpoolFull`` otherwise."""
        if self.kafka_up and self.spool.is_empty():
            started = time.perf_counter()
            try:
                await self.publisher.send(record)  # raises when not acknowledged within the publish deadline
            except PUBLISH_ERRORS as exc:
                self._kafka_down(exc)
            else:
                self.metrics.publish_latency.observe(time.perf_counter() - started)
                return PUBLISHED
        await self.spool.append(record)
        return SPOOLED

    def _kafka_down(self, exc: BaseException) -> None:
        self.metrics.producer_errors += 1
        if self.kafka_up:
            reason = "no acknowledgement within the publish deadline" if isinstance(exc, asyncio.TimeoutError) else exc
            log.warning("Kafka unavailable (%s): events go to the spool %s", reason, self.spool.directory)
        self.kafka_up = False

    async def check_kafka(self, timeout_s: float = 1.0) -> bool:
        """Probe the broker (for /readyz); a failed probe switches to the spool."""
        if self.kafka_up and not await self.publisher.probe(timeout_s):
            self._kafka_down(ConnectionError("metadata request failed"))
            self.spool.wakeup.set()  # let the drainer take over probing
        return self.kafka_up

    async def drain_forever(self) -> None:
        """The background task: start the producer, empty the spool in arrival order, restore direct mode."""
        backoff = Backoff()
        while True:
            self.spool.wakeup.clear()
            if not self.publisher.started and not await self.publisher.start():
                self.metrics.producer_errors += 1
                await backoff.sleep()
                continue
            if self.spool.pending_records:
                if await self._drain_batch():
                    backoff.reset()
                else:
                    await backoff.sleep()
                continue
            if not self.kafka_up:
                if await self.publisher.probe(self.deadline_s * 4):
                    log.info("Kafka reachable: publishing directly again")
                    self.kafka_up = True
                    backoff.reset()
                else:
                    await backoff.sleep()
                continue
            await self.spool.wakeup.wait()

    async def _drain_batch(self) -> bool:
        try:
            records, cursor = self.spool.read_batch(self.batch_size)
        except SpoolCorrupt:
            log.exception("the spool is damaged; the drainer stops (records after the damage are kept on disk)")
            raise
        try:
            await self.publisher.send_batch(records)
        except NEVER_ACCEPTED:  # one record of the batch (or more) can never be sent: find it, set it aside
            # the refused batch took its sequence numbers: without a new producer, the idempotent producer's next
            # batch to that partition is refused as out of order
            if not await self.publisher.restart():
                return False
            return await self._drain_singly(len(records))
        except PUBLISH_ERRORS as exc:
            await self._drain_failed(exc)
            return False
        await self.spool.commit(cursor, len(records))
        self.metrics.drained += len(records)
        self._drained_up()
        return True

    async def _drain_singly(self, count: int) -> bool:
        """Send the next ``count`` spooled records one at a time; a record Kafka refuses for good is set aside
        (``Spool.set_aside``, logged, counted) and the drain goes on: nothing waits behind it forever."""
        for _ in range(count):
            records, cursor = self.spool.read_batch(1)
            if not records:
                break
            refused = False
            try:
                await self.publisher.send_batch(records)
            except NEVER_ACCEPTED as exc:
                if not await self._set_aside(records[0], exc):
                    return False
                refused = True
            except PUBLISH_ERRORS as exc:
                await self._drain_failed(exc)
                return False
            else:
                self.metrics.drained += 1
            await self.spool.commit(cursor, 1)
            if refused and not await self.publisher.restart():  # as after the batch: a new sequence
                return False
        self._drained_up()
        return True

    async def _set_aside(self, record: OutboundRecord, refusal: BaseException) -> bool:
        """Keep a record Kafka refused for good out of the way (logged, counted); False when it cannot be (e.g. a
        full disk: it stays first in the spool and is tried again later)."""
        reason = f"{type(refusal).__name__}: {refusal}"
        try:
            path = await self.spool.set_aside(record, reason)
        except OSError as error:
            log.error("Kafka refused an event for good (%s) and it cannot be set aside (%s)", reason, error)
            return False
        self.metrics.undeliverable += 1
        log.error("Kafka refused an event for good (%s); it is kept in %s and the spool drains on", reason, path)
        return True

    async def _drain_failed(self, exc: BaseException) -> None:
        """A drain attempt was not acknowledged: Kafka counts as down; a producer out of step is replaced."""
        self._kafka_down(exc)
        log.debug("spool drain attempt failed: %r", exc)
        if isinstance(exc, NEEDS_NEW_PRODUCER):
            await self.publisher.restart()

    def _drained_up(self) -> None:
        if self.spool.pending_records == 0:
            log.info("spool drained: publishing directly again")
            self.kafka_up = True
