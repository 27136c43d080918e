"""A deterministic identity for an agent status event.

Dialpad sends no event id and delivers at least once, so a retry can only be recognised from the
payload. Two deliveries are the same status change when the fields that describe the change agree:
the agent, the event time, the statuses, the reason, the (order-insensitive) call centers and the
time the webhook was generated. Display fields (name, email, phone) are left out on purpose.
"""

import hashlib

import msgspec

from schemas.agent_status import AgentStatusEvent

_canonical = msgspec.json.Encoder()
_EMPTY_SHA256 = hashlib.sha256()
"""Never updated: copied per identity, a third cheaper than ``hashlib.sha256(data)``, which looks the digest
up in OpenSSL on every call."""


def dedup_identity(event: AgentStatusEvent) -> str:
    """Return a 32-hex-digit identity that equal status changes share and different ones do not."""
    fields = (
        event.agent_id,
        event.date,
        event.on_duty_status,
        event.availability_status,
        event.on_duty_status_reason or "",
        sorted(event.call_center_ids),  # strings once decoded (``AgentStatusEvent.__post_init__``)
        event.event_timestamp,
        event.powerdialer_mode,
        event.powerdialer_session,
    )
    digest = _EMPTY_SHA256.copy()
    digest.update(_canonical.encode(fields))
    return digest.hexdigest()[:32]
