"""An authentic webhook payload that failed validation, kept on ``dialpad.agent-status.rejected.v1``.

The ingest service verified the payload (signature, or unsigned input explicitly allowed) but could not
decode it into an ``AgentStatusEvent``. Nothing authentic is dropped: the payload is kept verbatim with
the reason, so it can be inspected and replayed once the schema or the sender is fixed.
"""

from __future__ import annotations

import msgspec


class RejectedAgentStatus(msgspec.Struct, omit_defaults=True):
    """A verified Dialpad agent status payload that did not match the schema, with the reason; key = agent id if known."""

    reason: str
    """What was wrong, in msgspec's words (e.g. ``Expected `int`, got `str```)."""
    payload: str
    """The verified payload exactly as received: JSON text, possibly invalid (undecodable bytes replaced)."""
    received_ms: int
    """When the ingest service received the webhook, unix milliseconds UTC."""
    path: str | None = None
    """Where the payload went wrong, in msgspec's notation (``$.target.id``); absent when not known."""
    agent_id: str | None = None
    """``target.id`` as a string when the payload carries one."""
    signed: bool = True
    """Whether the payload came in a verified JWT (false: unsigned JSON, accepted by configuration)."""
