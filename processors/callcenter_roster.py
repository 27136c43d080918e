"""The call-center-keyed rules of the on-duty roster: one call center's roster + one change -> new roster.

Pure: no Faust, no Kafka. Changes come from the agent stage, re-keyed by call center; each carries the agent's
version, so applying them is idempotent whatever the redelivery: an older version is ignored, the same version
re-emits what the roster already says (a replay after a crash may have lost the first emission).
"""

from __future__ import annotations

import enum
from collections import Counter

import msgspec

from schemas.roster import CallCenterAgentRecord, CallCenterSummaryRecord, RosterChange

UNKNOWN_AVAILABILITY = "unknown"


class CallCenterRoster(msgspec.Struct, omit_defaults=True):
    """What the call-center stage keeps per call center (the ``callcenter-roster`` table value)."""

    call_center_id: str
    agents: dict[str, CallCenterAgentRecord] = {}
    """On-duty agents by agent id."""
    departed: dict[str, int] = {}
    """Agent id -> the agent version at which it left: later stale joins are ignored."""
    as_of_ms: int = 0
    """Event time (unix ms) of the latest applied change."""


class ChangeOutcome(enum.Enum):
    APPLIED = "applied"
    REPEATED = "repeated"
    STALE = "stale"


class RosterStep(msgspec.Struct):
    roster: CallCenterRoster
    outcome: ChangeOutcome
    entry_key: str
    """``<call center id>:<agent id>``, the key of the callcenter-agents record."""
    entry: CallCenterAgentRecord | None
    """The record to publish under ``entry_key`` (None: a tombstone); meaningless when STALE."""


def entry_key(call_center_id: str, agent_id: str) -> str:
    return f"{call_center_id}:{agent_id}"


def apply_change(roster: CallCenterRoster | None, change: RosterChange) -> RosterStep:
    roster = roster or CallCenterRoster(call_center_id=change.call_center_id)
    key = entry_key(change.call_center_id, change.agent_id)
    member = roster.agents.get(change.agent_id)
    known_version = member.agent_version if member else roster.departed.get(change.agent_id, -1)
    if change.agent_version < known_version:
        return RosterStep(roster, ChangeOutcome.STALE, key, None)
    if change.agent_version == known_version:
        return RosterStep(roster, ChangeOutcome.REPEATED, key, member)
    agents = dict(roster.agents)
    departed = dict(roster.departed)
    if change.entry is None:
        agents.pop(change.agent_id, None)
        departed[change.agent_id] = change.agent_version
    else:
        agents[change.agent_id] = change.entry
        departed.pop(change.agent_id, None)
    updated = CallCenterRoster(roster.call_center_id, agents, departed, max(roster.as_of_ms, change.date_ms))
    return RosterStep(updated, ChangeOutcome.APPLIED, key, change.entry)


def summarize(roster: CallCenterRoster) -> CallCenterSummaryRecord:
    """Counts of on-duty agents by status and by availability."""
    agents = roster.agents.values()
    return CallCenterSummaryRecord(
        call_center_id=roster.call_center_id,
        on_duty_agents=len(roster.agents),
        agents_by_status=dict(sorted(Counter(a.on_duty_status for a in agents).items())),
        agents_by_availability=dict(
            sorted(Counter(a.availability_status or UNKNOWN_AVAILABILITY for a in agents).items())
        ),
        as_of_ms=roster.as_of_ms,
    )
