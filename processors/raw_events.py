"""The one batch stage on the raw topic: decode each event once, hand the batch to every stage.

Every stage keyed by agent id (the roster, time in status) sees the same decoded batch, so an event pays Faust's
per-message cost once, not once per stage. Undecodable records go to the dead-letter topic; the worker goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import faust
import msgspec

from processors.dead_letters import DeadLetterSender
from processors.batches import BatchRecord, batch_agent
from processors.faust_io import raw_topic
from processors.outbox import Outbox
from processors.settings import ProcessorSettings
from schemas import AgentStatusEvent, SchemaError, decode_agent_status_event, dedup_identity


class RawEvent(msgspec.Struct, frozen=True):
    """A decoded raw event with where it came from."""

    event: AgentStatusEvent
    agent_id: str
    """``event.agent_id``, computed once."""
    dedup_id: str
    partition: int
    offset: int


class RawBatchHandler(Protocol):
    def handle_raw_batch(self, batch: Sequence[RawEvent], outbox: Outbox) -> None:
        """Apply a batch of decoded events (in partition order): write tables and queue records on ``outbox``."""


NO_VALUE = "the record has no value (null, e.g. a tombstone): a raw record must hold an agent status event"
KEY_NOT_AGENT_ID = ("the record's key is not its agent id {agent_id!r}: a raw record is keyed by target.id, so that "
                    "an agent's events share one partition (and its state one worker)")


def register(app: faust.App, settings: ProcessorSettings, dead_letters: DeadLetterSender,
             handlers: Sequence[RawBatchHandler]) -> faust.TopicT:
    """The raw-topic batch stage: decodes each batch once and hands it to every handler."""
    source = raw_topic(app, settings.raw_topic, settings.partitions)

    @batch_agent(app, source, settings)
    def apply_agent_events(messages: list[BatchRecord], outbox: Outbox) -> None:
        batch = []
        for message in messages:
            try:
                if message.value is None:  # a tombstone: nothing to decode
                    raise SchemaError(NO_VALUE, "$")
                decoded = decode_agent_status_event(message.value)
                if message.key != decoded.agent_id.encode():  # the tables are partitioned by agent id
                    raise SchemaError(KEY_NOT_AGENT_ID.format(agent_id=decoded.agent_id), "$.target.id")
            except SchemaError as exc:
                dead_letters.send(outbox, message, exc)
                continue
            batch.append(RawEvent(decoded, decoded.agent_id, dedup_identity(decoded), message.partition,
                                  message.offset))
        for handler in handlers:
            handler.handle_raw_batch(batch, outbox)

    return source
