"""The Kafka edge: an idempotent aiokafka producer with ``acks=all`` that sends ``OutboundRecord`` s.

``start`` never raises for an unreachable broker: the service must accept (and spool) events while Kafka
is down, so a failed start only leaves the publisher not ``started``; the drainer calls ``start`` again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
)

from ingest.batching import PartitionBatcher
from ingest.records import OutboundRecord

log = logging.getLogger(__name__)

PUBLISH_ERRORS: tuple[type[BaseException], ...] = (KafkaError, asyncio.TimeoutError, OSError)
"""What a failed send or start may raise: each means "not acknowledged", never "lost" (the spool keeps it)."""

NEVER_ACCEPTED: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, CorruptRecordException, InvalidTopicError,
)
"""What Kafka answers for records it will never accept as they are, however often they are sent again. (Not
``InvalidTimestampError``: a timestamp too far ahead by the broker's clock is accepted a little later.)"""

NEEDS_NEW_PRODUCER: tuple[type[KafkaError], ...] = (
    OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced,
)
"""What the idempotent producer cannot get past on its own: its sequence numbers (or its producer id) no longer
match the broker's, e.g. after a batch the broker refused for good left a gap. Only a new producer sends again."""


class Publisher(Protocol):
    """What the service needs from Kafka; ``KafkaPublisher`` in production, an in-memory double in unit tests."""

    @property
    def started(self) -> bool: ...

    async def start(self) -> bool: ...

    def send(self, record: OutboundRecord) -> Awaitable[None]:
        """What to await: it returns once the broker acknowledged ``record`` and raises one of
        ``PUBLISH_ERRORS`` when it did not within the publish deadline (``TimeoutError``) or refused it."""

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None: ...

    async def probe(self, timeout_s: float) -> bool: ...

    async def restart(self) -> bool:
        """Replace the producer by a new one (``NEEDS_NEW_PRODUCER``); False while the broker is unreachable."""

    async def stop(self, timeout_s: float) -> None: ...


class KafkaPublisher:
    """Sends records with idempotence and ``acks=all``; each ``send`` returns once the broker acknowledged.

    Concurrent ``send`` s share per-partition batches (``ingest.batching``): one batch, one acknowledgement.
    """

    def __init__(self, bootstrap: str, *, publish_deadline_s: float = 0.5, request_timeout_ms: int = 10_000,
                 client_id: str = "onduty-ingest") -> None:
        self._bootstrap = bootstrap
        self._publish_deadline_s = publish_deadline_s
        self._request_timeout_ms = request_timeout_ms
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._batcher: PartitionBatcher | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> bool:
        """Connect; return False (and stay stopped) when the broker cannot be reached."""
        if self._producer is not None:
            return True
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, acks="all", enable_idempotence=True,
            request_timeout_ms=self._request_timeout_ms, linger_ms=0,
        )
        try:
            await producer.start()
        except PUBLISH_ERRORS as exc:
            log.warning("Kafka at %s not reachable (%s); events go to the spool until it is", self._bootstrap, exc)
            await producer.stop()
            return False
        except asyncio.CancelledError:  # the service is stopping: close what was half opened
            await producer.stop()
            raise
        self._producer = producer
        self._batcher = PartitionBatcher(producer, deadline_s=self._publish_deadline_s)
        log.info("Kafka producer connected to %s", self._bootstrap)
        return True

    def send(self, record: OutboundRecord) -> Awaitable[None]:
        assert self._batcher is not None, "send() before start()"
        return self._batcher.enqueue(record)  # the request's future itself: no coroutine frame per request

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        """Send in order and wait for every acknowledgement (the broker keeps per-partition order)."""
        assert self._producer is not None, "send_batch() before start()"
        acks = [
            await self._producer.send(r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms, headers=r.headers)
            for r in records
        ]
        await asyncio.gather(*acks)

    async def probe(self, timeout_s: float) -> bool:
        """Can a broker answer a metadata request right now?"""
        if self._producer is None:
            return await self.start()
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout_s)
        except PUBLISH_ERRORS:
            return False
        return True

    async def restart(self) -> bool:
        """A new producer: a new producer id, sequence numbers from 0 (what is in flight is flushed first)."""
        log.warning("replacing the Kafka producer (its sequence numbers no longer match the broker's)")
        await self.stop(self._request_timeout_ms / 1000)
        return await self.start()

    async def stop(self, timeout_s: float) -> None:
        """Flush what is in flight (bounded by ``timeout_s``) and close."""
        producer, self._producer, self._batcher = self._producer, None, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("Kafka producer did not flush within %.1fs; unacknowledged events are in the spool", timeout_s)
