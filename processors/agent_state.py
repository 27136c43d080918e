"""The agent-keyed rules of the on-duty roster: one agent's state + one event -> new state + records to emit.

Pure: no Faust, no Kafka. The Faust stage (``roster_stage.py``) decodes, calls ``apply_event``, writes the
returned state and sends the returned records.

Rules (docs/semantics.md):
* events are ordered by ``(date, event_timestamp, dedup identity)``; the latest one is the current state;
* a duplicate (same dedup identity) changes nothing and emits nothing;
* an event older than the current state is late: counted, never rolls the state back;
* an implausible date (``event_time.implausible_date``) is counted and otherwise ignored: one typo must not
  become the agent's current state for good (every real event after it would look older);
* a source offset the agent has already applied is a replay after a worker restart: the state stays, and the
  full current state is emitted again (idempotent upserts), so nothing a crash swallowed stays missing.
"""

from __future__ import annotations

import enum

import msgspec

from processors.event_time import implausible_date
from schemas import AgentStatusEvent
from schemas.roster import AgentStateRecord, AgentStatusSnapshot, CallCenterAgentRecord, RosterChange

RECENT_IDS_KEPT = 16
"""How many dedup identities an agent remembers: Dialpad's retries come within ~1.5 s, so this is ample."""
RECENT_ID_CHARS = 16
"""Remembered prefix of each identity: 64 bits, collision-free in practice among one agent's recent events."""


class AgentState(msgspec.Struct, omit_defaults=True):
    """What the agent stage keeps per agent (the ``agent-state`` table value)."""

    agent_id: str
    current: AgentStatusSnapshot | None = None
    previous: AgentStatusSnapshot | None = None
    agent_name: str | None = None
    version: int = 0
    late_events: int = 0
    implausible_events: int = 0
    recent_ids: list[str] = []
    last_offset: int = -1
    """Highest source-topic offset applied for this agent (replay detection)."""
    known_call_centers: list[str] = []
    """Every call center the agent was ever on duty for, to re-emit leaves after a replay."""


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    IMPLAUSIBLE = "implausible"
    REPLAY = "replay"


_EMITS_AGENT_RECORD = frozenset((Outcome.APPLIED, Outcome.LATE, Outcome.REPLAY))


class AgentStep(msgspec.Struct):
    """The result of applying one event: the new state, and what to emit for it.

    The records are built on demand (``agent_record``, ``changes``): a batch that applies many events of one agent
    sends only the latest record per key, and builds only those (``change_kinds``, ``change``).
    """

    state: AgentState
    outcome: Outcome
    left: list[str] = []
    """The call centers this event took the agent out of (APPLIED)."""

    @property
    def emits_agent_record(self) -> bool:
        return self.outcome in _EMITS_AGENT_RECORD

    @property
    def agent_record(self) -> AgentStateRecord | None:
        """The agent-state topic record to send (None: nothing to send)."""
        return agent_record(self.state) if self.emits_agent_record else None

    def change_kinds(self) -> list[tuple[str, bool]]:
        """``(call center id, joined)`` of each roster change to send, in order; False: the agent left it."""
        if self.outcome is Outcome.APPLIED:
            assert self.state.current is not None
            return [(cc, False) for cc in self.left] + [(cc, True) for cc in self.state.current.call_center_ids]
        if self.outcome is Outcome.REPLAY:
            return current_change_kinds(self.state)
        return []

    def change(self, call_center_id: str, joined: bool) -> RosterChange:
        return _join(self.state, call_center_id) if joined else _leave(self.state, call_center_id)

    @property
    def changes(self) -> list[RosterChange]:
        """The roster changes to send, re-keyed by call center."""
        return [self.change(cc, joined) for cc, joined in self.change_kinds()]


def apply_event(
    state: AgentState | None, event: AgentStatusEvent, dedup_id: str, offset: int | None, now_ms: int
) -> AgentStep:
    """Apply one decoded event (at source ``offset``, wall clock ``now_ms``) to an agent's state."""
    state = state or AgentState(agent_id=event.agent_id)
    if offset is not None and offset <= state.last_offset:
        return AgentStep(state, Outcome.REPLAY)
    short_id = dedup_id[:RECENT_ID_CHARS]
    if short_id in state.recent_ids:
        return AgentStep(state, Outcome.DUPLICATE)
    recent_ids = [*state.recent_ids[-(RECENT_IDS_KEPT - 1):], short_id]
    last_offset = state.last_offset if offset is None else offset
    if implausible_date(event.date, now_ms) is not None:
        counted = msgspec.structs.replace(
            state, implausible_events=state.implausible_events + 1, recent_ids=recent_ids, last_offset=last_offset
        )
        return AgentStep(counted, Outcome.IMPLAUSIBLE)
    current = state.current
    # one agent's events are ordered by event time, then generation time, then identity
    if current is not None and (event.date, event.event_timestamp or 0, dedup_id) < (
            current.date_ms, current.event_timestamp_ms or 0, current.dedup_id):
        late = msgspec.structs.replace(
            state, late_events=state.late_events + 1, recent_ids=recent_ids, last_offset=last_offset
        )
        return AgentStep(late, Outcome.LATE)

    since_ms = current.since_ms if current is not None and current.on_duty_status == event.on_duty_status else event.date
    call_center_ids = sorted(set(event.call_center_ids))
    known = state.known_call_centers
    if not known or any(cc not in known for cc in call_center_ids):
        known = sorted(set(known) | set(call_center_ids))
    snapshot = AgentStatusSnapshot(
        on_duty_status=event.on_duty_status,
        call_center_ids=call_center_ids,
        since_ms=since_ms,
        date_ms=event.date,
        availability_status=event.availability_status,
        on_duty_status_reason=event.on_duty_status_reason,
        event_timestamp_ms=event.event_timestamp,
        dedup_id=dedup_id,
    )
    new_state = msgspec.structs.replace(
        state,
        current=snapshot,
        previous=current,
        agent_name=event.target.name or state.agent_name,
        version=state.version + 1,
        recent_ids=recent_ids,
        last_offset=last_offset,
        known_call_centers=known,
    )
    if current is None or current.call_center_ids == call_center_ids:  # the usual case: no call center left
        left = []
    else:
        left = sorted(set(current.call_center_ids) - set(call_center_ids))
    return AgentStep(new_state, Outcome.APPLIED, left)


def agent_record(state: AgentState) -> AgentStateRecord | None:
    """The agent-state topic record for a state (None before the first applied event)."""
    if state.current is None:
        return None
    return AgentStateRecord(
        agent_id=state.agent_id,
        current=state.current,
        updated_ms=state.current.date_ms,
        version=state.version,
        agent_name=state.agent_name,
        previous=state.previous,
        late_events=state.late_events,
    )


def current_change_kinds(state: AgentState) -> list[tuple[str, bool]]:
    """Every call center's view of this agent as of now, as ``(call center id, joined)``: joins for the current
    ones, leaves for the rest."""
    if state.current is None:
        return []
    on_duty = set(state.current.call_center_ids)
    kinds = [(cc, False) for cc in state.known_call_centers if cc not in on_duty]
    return kinds + [(cc, True) for cc in state.current.call_center_ids]


def _join(state: AgentState, call_center_id: str) -> RosterChange:
    current = state.current
    assert current is not None
    entry = CallCenterAgentRecord(
        call_center_id=call_center_id,
        agent_id=state.agent_id,
        on_duty_status=current.on_duty_status,
        since_ms=current.since_ms,
        updated_ms=current.date_ms,
        agent_version=state.version,
        agent_name=state.agent_name,
        availability_status=current.availability_status,
        on_duty_status_reason=current.on_duty_status_reason,
    )
    return RosterChange(call_center_id, state.agent_id, state.version, current.date_ms, entry)


def _leave(state: AgentState, call_center_id: str) -> RosterChange:
    assert state.current is not None
    return RosterChange(call_center_id, state.agent_id, state.version, state.current.date_ms, None)
