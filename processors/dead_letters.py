"""Records a processor cannot decode go to ``onduty.dead-letter.v1`` with the reason; the worker goes on."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import faust

from processors.faust_io import output_topic
from processors.outbox import Outbox
from schemas import SchemaError, encode
from schemas.dead_letter import DeadLetterRecord
from schemas.topics import DEAD_LETTER, TopicSpec

if TYPE_CHECKING:
    from processors.batches import BatchRecord

log = logging.getLogger(__name__)


class DeadLetterSender:
    def __init__(self, app: faust.App, spec: TopicSpec) -> None:
        assert spec.name == DEAD_LETTER
        self.topic = output_topic(app, spec)

    def send(self, outbox: Outbox, message: BatchRecord, error: SchemaError) -> None:
        record = DeadLetterRecord(
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            reason=error.message,
            path=error.path,
            failed_ms=int(time.time() * 1000),
            key=(message.key or b"").decode("utf-8", "replace"),
            value=(message.value or b"").decode("utf-8", "replace"),
        )
        log.warning("dead letter from %s[%d]@%d: %s", message.topic, message.partition, message.offset, error)
        # a record without key (never sent by our ingest) goes to partition 0
        outbox.send(DEAD_LETTER, message.key, encode(record), partition=0 if message.key is None else None)
