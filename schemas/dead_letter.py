"""Records a processor could not decode, kept with the reason (``onduty.dead-letter.v1``)."""

from __future__ import annotations

import msgspec


class DeadLetterRecord(msgspec.Struct, omit_defaults=True):
    """A record a processor could not decode; the original bytes are kept as text."""

    source_topic: str
    """Where the record came from."""
    source_partition: int
    """Its partition."""
    source_offset: int
    """Its offset."""
    reason: str
    """What was wrong, from the schema decoder."""
    failed_ms: int
    """Wall-clock time (unix ms) when the processor gave up on it."""
    key: str = ""
    """The record key, as text."""
    value: str = ""
    """The record value, as text (undecodable bytes replaced)."""
    path: str | None = None
    """Where in the value it was wrong (``$.target.id``), when known."""
