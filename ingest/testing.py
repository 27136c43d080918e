"""An in-memory ``Publisher`` for tests of the service without a broker (the Kafka edge replaced, nothing else)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
)

from ingest.records import OutboundRecord


class MemoryPublisher:
    """Records what would have been sent. ``mode``: ``up``, ``down`` (refuses) or ``stalled`` (never acks).
    ``too_large``: records Kafka refuses for good (``MessageSizeTooLargeError``), failing any send that holds one;
    after that, every send fails with ``OutOfOrderSequenceNumber`` until ``restart``, as the idempotent producer's
    sends to that partition do (the refused batch took its sequence numbers)."""

    def __init__(self, mode: str = "up", request_timeout_s: float = 0.2,
                 too_large: Callable[[OutboundRecord], bool] | None = None) -> None:
        self.mode = mode
        self.request_timeout_s = request_timeout_s
        self.too_large = too_large
        self.sent: list[OutboundRecord] = []
        self.restarts = 0
        self._sequence_gap = False
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> bool:
        self._started = self.mode == "up"
        return self._started

    async def _gate(self) -> None:
        if self.mode == "down":
            raise KafkaConnectionError("broker down (test double)")
        if self.mode == "stalled":  # no answer until the producer's request timeout (0.2 s here)
            await asyncio.sleep(self.request_timeout_s)
            raise KafkaTimeoutError()

    def _refuse_too_large(self, records: Sequence[OutboundRecord]) -> None:
        if self._sequence_gap:  # as the idempotent producer after a batch the broker refused, until restarted
            raise OutOfOrderSequenceNumber()
        if self.too_large is not None and any(self.too_large(r) for r in records):
            self._sequence_gap = True
            raise MessageSizeTooLargeError("larger than the topic accepts (test double)")

    async def send(self, record: OutboundRecord) -> None:
        await self._gate()
        self._refuse_too_large([record])
        self.sent.append(record)

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        await self._gate()
        self._refuse_too_large(records)
        self.sent.extend(records)

    async def probe(self, timeout_s: float) -> bool:
        return await self.start()

    async def restart(self) -> bool:
        self.restarts += 1
        self._sequence_gap = False
        return await self.start()

    async def stop(self, timeout_s: float) -> None:
        self._started = False
