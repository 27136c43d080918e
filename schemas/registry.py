"""Which Structs are exported as JSON Schema, and under which file name.

Each derived record module adds its Structs here; the file stem names the topic it describes.
"""

from schemas.agent_status import AgentStatusEvent

EXPORTED_SCHEMAS: dict[str, type] = {
    "dialpad.agent-status.v1": AgentStatusEvent,
}
