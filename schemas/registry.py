"""Which Structs are exported as JSON Schema, and under which file name.

Each derived record module adds its Structs here; the file stem names the topic it describes.
"""

from schemas.agent_status import AgentStatusEvent
from schemas.rejected import RejectedAgentStatus
from schemas.dead_letter import DeadLetterRecord
from schemas.roster import AgentStateRecord, CallCenterAgentRecord, CallCenterSummaryRecord
from schemas.time_in_status import AgentTimeInStatus, CallCenterTimeInStatus, LateEvent, StatusInterval

EXPORTED_SCHEMAS: dict[str, type] = {
    "dialpad.agent-status.v1": AgentStatusEvent,
    "dialpad.agent-status.rejected.v1": RejectedAgentStatus,
    "onduty.agent-state.v1": AgentStateRecord,
    "onduty.callcenter-agents.v1": CallCenterAgentRecord,
    "onduty.callcenter-summary.v1": CallCenterSummaryRecord,
    "onduty.dead-letter.v1": DeadLetterRecord,
    "onduty.status-intervals.v1": StatusInterval,
    "onduty.agent-time-in-status.v1": AgentTimeInStatus,
    "onduty.callcenter-time-in-status.v1": CallCenterTimeInStatus,
    "onduty.late-events.v1": LateEvent,
}
