"""The contract: msgspec Structs for the Dialpad wire event and every derived record.

Other systems consume these shapes through the JSON Schema files exported into ``schemas/json``
(``onduty schemas export``); a test fails when the files drift from the Structs.
"""

from schemas.agent_status import (
    KNOWN_ON_DUTY_STATUSES,
    AgentStatusEvent,
    AgentTarget,
    decode_agent_status_event,
    decode_agent_status_payload,
    encode,
)
from schemas.errors import SchemaError
from schemas.identity import dedup_identity

__all__ = [
    "KNOWN_ON_DUTY_STATUSES",
    "AgentStatusEvent",
    "AgentTarget",
    "SchemaError",
    "decode_agent_status_event",
    "decode_agent_status_payload",
    "dedup_identity",
    "encode",
]
