"""The one Faust agent on the raw topic: decode each event once, hand the batch to every stage.

Every stage keyed by agent id (the roster, time in status) sees the same decoded batch, so an event pays Faust's
per-message cost once, not once per stage. Undecodable records go to the dead-letter topic; the worker goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import faust
import msgspec

from processors.dead_letters import DeadLetterSender
from processors.faust_io import raw_topic, take_batches
from processors.settings import ProcessorSettings
from schemas import AgentStatusEvent, SchemaError, decode_agent_status_event, dedup_identity


class RawEvent(msgspec.Struct, frozen=True):
    """A decoded raw event with where it came from."""

    event: AgentStatusEvent
    dedup_id: str
    partition: int
    offset: int


class RawBatchHandler(Protocol):
    async def handle_raw_batch(self, batch: Sequence[RawEvent]) -> None:
        """Apply a batch of decoded events (in partition order) and send what it produces."""


def register(app: faust.App, settings: ProcessorSettings, dead_letters: DeadLetterSender,
             handlers: Sequence[RawBatchHandler]) -> faust.TopicT:
    source = raw_topic(app, settings.raw_topic, settings.partitions)

    @app.agent(source, name="agent-events")
    async def apply_agent_events(stream: faust.StreamT) -> None:
        async for events in take_batches(stream, settings):
            batch = []
            for event in events:
                message = event.message
                try:
                    decoded = decode_agent_status_event(message.value)
                except SchemaError as exc:
                    await dead_letters.send(message, exc)
                    continue
                batch.append(RawEvent(decoded, dedup_identity(decoded), message.partition, message.offset))
            for handler in handlers:
                await handler.handle_raw_batch(batch)

    return source
