"""Records of the on-duty roster topics: agent state, per-call-center membership, per-call-center counts."""

from __future__ import annotations

import msgspec


class AgentStatusSnapshot(msgspec.Struct, omit_defaults=True):
    """An agent's status as of one event."""

    on_duty_status: str
    """available, unavailable, occupied, wrapup, busy, or a newer value Dialpad sent."""
    call_center_ids: list[str]
    """The call centers the agent is on duty for."""
    since_ms: int
    """Event time (unix ms) at which the agent entered this ``on_duty_status``."""
    date_ms: int
    """Event time (unix ms, the event's ``date``) of the event this snapshot comes from."""
    availability_status: str | None = None
    """``available`` or ``unavailable`` (Dialpad's availability), if sent."""
    on_duty_status_reason: str | None = None
    """The reason the agent gave, if any."""
    event_timestamp_ms: int | None = None
    """When Dialpad generated the webhook (unix ms); only used to order events with equal ``date``."""
    dedup_id: str = ""
    """The dedup identity of the event this snapshot comes from."""


class AgentStateRecord(msgspec.Struct, omit_defaults=True):
    """``onduty.agent-state.v1`` (compacted, key = agent id): an agent's current and previous state."""

    agent_id: str
    """The agent's Dialpad user id, as a string."""
    current: AgentStatusSnapshot
    """The state of the latest event by event time."""
    updated_ms: int
    """Event time (unix ms) of the latest applied event."""
    version: int
    """Number of status changes applied for this agent; grows with every change."""
    agent_name: str | None = None
    """The agent's display name, from the latest event."""
    previous: AgentStatusSnapshot | None = None
    """The state before the latest change, if any."""
    late_events: int = 0
    """Events that arrived older than the current state (they do not roll it back)."""


class CallCenterAgentRecord(msgspec.Struct, omit_defaults=True):
    """``onduty.callcenter-agents.v1`` (compacted, key = ``<call center id>:<agent id>``): one on-duty agent.

    A tombstone (null value) for the key means the agent left that call center.
    """

    call_center_id: str
    """The call center."""
    agent_id: str
    """The on-duty agent's id, as a string."""
    on_duty_status: str
    """The agent's current on-duty status."""
    since_ms: int
    """Event time (unix ms) at which the agent entered ``on_duty_status``."""
    updated_ms: int
    """Event time (unix ms) of the agent's latest applied event."""
    agent_version: int
    """The agent's ``version`` (see agent-state) this record reflects."""
    agent_name: str | None = None
    """The agent's display name."""
    availability_status: str | None = None
    """The agent's availability."""
    on_duty_status_reason: str | None = None
    """The agent's reason, if any."""


class CallCenterSummaryRecord(msgspec.Struct, omit_defaults=True):
    """``onduty.callcenter-summary.v1`` (compacted, key = call center id): on-duty counts."""

    call_center_id: str
    """The call center."""
    on_duty_agents: int
    """How many agents are on duty for the call center."""
    agents_by_status: dict[str, int]
    """On-duty agents by ``on_duty_status``."""
    agents_by_availability: dict[str, int]
    """On-duty agents by ``availability_status`` (``unknown`` when not sent)."""
    as_of_ms: int
    """Event time (unix ms) of the latest change that affected this call center."""


class RosterChange(msgspec.Struct, omit_defaults=True):
    """Internal re-key record, agent stage -> call-center stage (key = call center id).

    ``entry`` is the agent's roster entry for the call center, or null when the agent left it. Changes carry the
    agent's version so the call-center stage applies each agent's changes idempotently and never goes back.
    """

    call_center_id: str
    """The call center the change is for (also the record key)."""
    agent_id: str
    """The agent whose membership or status changed."""
    agent_version: int
    """The agent's version after the change."""
    date_ms: int
    """Event time (unix ms) of the change."""
    entry: CallCenterAgentRecord | None = None
    """The agent's entry in the call center's roster; null when the agent is no longer on duty for it."""
