"""What the service writes to Kafka: one ``OutboundRecord`` per webhook, built from a verified payload.

Pure functions: no Kafka, no aiohttp. The same record goes to Kafka directly or through the spool.
"""

from __future__ import annotations

import msgspec

from ingest.errors import InvalidEvent
from ingest.verification import Verified
from schemas import AgentStatusEvent, SchemaError, decode_agent_status_event, dedup_identity, encode
from schemas.rejected import RejectedAgentStatus

DEDUP_HEADER = "onduty-dedup-id"
"""Header carrying ``schemas.dedup_identity`` of the event (32 hex digits)."""
RECEIVED_HEADER = "onduty-received-ms"
"""Header carrying the receive time, unix milliseconds UTC, as decimal text."""
REJECTED_REASON_HEADER = "onduty-rejected-reason"

FUTURE_TIMESTAMP_TOLERANCE_MS = 55 * 60_000
"""Kafka 4 refuses a record timestamp more than an hour ahead (``log.message.timestamp.after.max.ms``);
beyond this tolerance the Kafka timestamp falls back to the receive time (the event's ``date`` is unchanged)."""


class OutboundRecord(msgspec.Struct, array_like=True, frozen=True):
    """One Kafka record, ready to send (also the spool's on-disk record, msgpack-encoded)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None
    received_ms: int


class _TargetId(msgspec.Struct):
    id: str | int | None = None


class _WithTarget(msgspec.Struct):
    target: _TargetId | None = None


_target_decoder = msgspec.json.Decoder(_WithTarget)


def kafka_timestamp_ms(event: AgentStatusEvent, received_ms: int) -> int:
    """The event's ``date`` (event time), unless the broker would refuse it as too far in the future."""
    if event.date > received_ms + FUTURE_TIMESTAMP_TOLERANCE_MS:
        return received_ms
    return event.date


def event_record(event: AgentStatusEvent, topic: str, received_ms: int) -> OutboundRecord:
    """The raw-topic record of a valid event: key = agent id, value = the normalised event."""
    received = str(received_ms).encode()
    return OutboundRecord(
        topic=topic,
        key=event.agent_id.encode(),
        value=encode(event),
        headers=[(DEDUP_HEADER, dedup_identity(event).encode()), (RECEIVED_HEADER, received)],
        timestamp_ms=kafka_timestamp_ms(event, received_ms),
        received_ms=received_ms,
    )


def rejected_record(verified: Verified, error: InvalidEvent, topic: str, received_ms: int) -> OutboundRecord:
    """The rejected-topic record of an authentic payload that failed validation."""
    agent_id = _agent_id(verified.payload)
    rejected = RejectedAgentStatus(
        reason=error.message, payload=verified.payload.decode("utf-8", "replace"), received_ms=received_ms,
        path=error.path, agent_id=agent_id, signed=verified.signed,
    )
    return OutboundRecord(
        topic=topic,
        key=agent_id.encode() if agent_id else None,
        value=encode(rejected),
        headers=[(RECEIVED_HEADER, str(received_ms).encode()), (REJECTED_REASON_HEADER, error.message.encode())],
        timestamp_ms=received_ms,
        received_ms=received_ms,
    )


def decode_event(verified: Verified) -> AgentStatusEvent:
    """Decode a verified payload into the schema's Struct; raise ``InvalidEvent`` with the field path."""
    try:
        return decode_agent_status_event(verified.payload)
    except SchemaError as exc:
        raise InvalidEvent(exc.message, exc.path) from None


def _agent_id(payload: bytes) -> str | None:
    try:
        target = _target_decoder.decode(payload).target
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # e.g. not UTF-8, nested too deeply
        return None
    if target is None or target.id in (None, ""):
        return None
    return str(target.id)
