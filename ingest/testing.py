"""An in-memory ``Publisher`` for tests of the service without a broker (the Kafka edge replaced, nothing else)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from ingest.records import OutboundRecord


class MemoryPublisher:
    """Records what would have been sent. ``mode``: ``up``, ``down`` (refuses) or ``stalled`` (never acks)."""

    def __init__(self, mode: str = "up", request_timeout_s: float = 0.2) -> None:
        self.mode = mode
        self.request_timeout_s = request_timeout_s
        self.sent: list[OutboundRecord] = []
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

    async def send(self, record: OutboundRecord) -> None:
        await self._gate()
        self.sent.append(record)

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        await self._gate()
        self.sent.extend(records)

    async def probe(self, timeout_s: float) -> bool:
        return await self.start()

    async def stop(self, timeout_s: float) -> None:
        self._started = False
