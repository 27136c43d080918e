"""The call-center-keyed rules of the on-duty roster: one agent's membership of one call center + one change.

Pure: no Faust, no Kafka. Changes come from the agent stage, re-keyed by call center; each carries the agent's
version, so applying them is idempotent whatever the redelivery: an older version is ignored, the same version
re-emits what the roster already says (a replay after a crash may have lost the first emission).

State is kept per (call center, agent) membership, so a change rewrites one small record, never a whole roster;
the per-call-center counts are kept beside it and updated by difference.
"""

from __future__ import annotations

import enum

import msgspec

from processors.counts import bump

from schemas.roster import CallCenterAgentRecord, CallCenterSummaryRecord, RosterChange

UNKNOWN_AVAILABILITY = "unknown"


class Membership(msgspec.Struct, omit_defaults=True):
    """One agent's place in one call center's roster (the ``callcenter-agents`` table value)."""

    agent_version: int
    """The agent version of the latest applied change; older changes are ignored."""
    entry: CallCenterAgentRecord | None = None
    """The agent's roster entry while on duty; None once it left."""


class ChangeOutcome(enum.Enum):
    APPLIED = "applied"
    REPEATED = "repeated"
    STALE = "stale"


class MembershipStep(msgspec.Struct):
    membership: Membership | None
    outcome: ChangeOutcome


def entry_key(call_center_id: str, agent_id: str) -> str:
    """``<call center id>:<agent id>``: the key of a callcenter-agents record and table entry."""
    return f"{call_center_id}:{agent_id}"


def apply_change(membership: Membership | None, change: RosterChange) -> MembershipStep:
    """Apply one change to an agent's membership; the resulting ``entry`` is what to publish (None: tombstone)."""
    known_version = membership.agent_version if membership is not None else -1
    if change.agent_version < known_version:
        return MembershipStep(membership, ChangeOutcome.STALE)
    if change.agent_version == known_version:
        return MembershipStep(membership, ChangeOutcome.REPEATED)
    return MembershipStep(Membership(change.agent_version, change.entry), ChangeOutcome.APPLIED)


def empty_summary(call_center_id: str) -> CallCenterSummaryRecord:
    return CallCenterSummaryRecord(call_center_id, 0, {}, {}, 0)


class SummaryCounts:
    """A call center's on-duty counts being updated (one batch's changes applied in place), then a record."""

    def __init__(self, summary: CallCenterSummaryRecord) -> None:
        self.call_center_id = summary.call_center_id
        self.on_duty = summary.on_duty_agents
        self.by_status = dict(summary.agents_by_status)
        self.by_availability = dict(summary.agents_by_availability)
        self.as_of_ms = summary.as_of_ms

    def apply(self, before: CallCenterAgentRecord | None, after: CallCenterAgentRecord | None, date_ms: int) -> None:
        """One agent's entry changed from ``before`` to ``after`` (None: not on duty) at ``date_ms``."""
        if before is not None:
            bump(self.by_status, before.on_duty_status, -1)
            bump(self.by_availability, before.availability_status or UNKNOWN_AVAILABILITY, -1)
            self.on_duty -= 1
        if after is not None:
            bump(self.by_status, after.on_duty_status, 1)
            bump(self.by_availability, after.availability_status or UNKNOWN_AVAILABILITY, 1)
            self.on_duty += 1
        if date_ms > self.as_of_ms:
            self.as_of_ms = date_ms

    def record(self) -> CallCenterSummaryRecord:
        return CallCenterSummaryRecord(
            call_center_id=self.call_center_id,
            on_duty_agents=self.on_duty,
            agents_by_status=dict(sorted(self.by_status.items())),
            agents_by_availability=dict(sorted(self.by_availability.items())),
            as_of_ms=self.as_of_ms,
        )


def update_summary(
    summary: CallCenterSummaryRecord,
    before: CallCenterAgentRecord | None,
    after: CallCenterAgentRecord | None,
    date_ms: int,
) -> CallCenterSummaryRecord:
    """The counts after one agent's entry changed from ``before`` to ``after`` (None: not on duty)."""
    counts = SummaryCounts(summary)
    counts.apply(before, after, date_ms)
    return counts.record()
