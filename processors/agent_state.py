"""The agent-keyed rules of the on-duty roster: one agent's state + one event -> new state + records to emit.

Pure: no Faust, no Kafka. The Faust stage (``roster_stage.py``) decodes, calls ``apply_event``, writes the
returned state and sends the returned records.

Rules (docs/semantics.md):
* events are ordered by ``(date, event_timestamp, dedup identity)``; the latest one is the current state;
* a duplicate (same dedup identity) changes nothing and emits nothing;
* an event older than the current state is late: counted, never rolls the state back; but when it falls among
  the agent's latest ``TIMELINE_KEPT`` events it corrects ``since_ms`` (and ``previous``), which depend on
  the events before the current one in event-time order, not in arrival order;
* an implausible date (``event_time.implausible_date``) is counted and otherwise ignored: one typo must not
  become the agent's current state for good (every real event after it would look older);
* a source offset the agent has already applied is a replay after a worker restart: the state stays, and the
  full current state is emitted again (idempotent upserts), so nothing a crash swallowed stays missing.
"""

from __future__ import annotations

import bisect
import enum

import msgspec

from processors.event_time import implausible_date
from schemas import AgentStatusEvent
from schemas.roster import AgentStateRecord, AgentStatusSnapshot, CallCenterAgentRecord, RosterChange

RECENT_IDS_KEPT = 16
"""How many dedup identities an agent remembers: Dialpad's retries come within ~1.5 s, so this is ample."""
RECENT_ID_CHARS = 16
"""Remembered prefix of each identity: 64 bits, collision-free in practice among one agent's recent events."""
TIMELINE_KEPT = 8
"""How many of its latest events (order key and status) an agent remembers for ``since_ms``: a late event
older than all of them is only counted (Dialpad's reordering spans a few events, not eight)."""


class TimelineEntry(msgspec.Struct, array_like=True, frozen=True):
    """One event of an agent's timeline: its place in the order (date, event timestamp, identity) and status."""

    date_ms: int
    event_timestamp_ms: int
    dedup_id: str
    """The first ``RECENT_ID_CHARS`` characters of the event's identity (as in ``recent_ids``)."""
    on_duty_status: str

    @property
    def order(self) -> tuple[int, int, str]:
        return (self.date_ms, self.event_timestamp_ms, self.dedup_id)


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
    timeline: list[TimelineEntry] = []
    """The agent's latest events in event-time order (at most ``TIMELINE_KEPT``; the last one is ``current``)."""
    timeline_since_ms: int | None = None
    """``since_ms`` in effect at ``timeline[0]``; None while the timeline holds every event the agent had."""


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
    corrected: bool = False
    """A late event changed the current ``since_ms`` (LATE): the roster entries are sent again."""

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
        if self.corrected:
            assert self.state.current is not None
            return [(cc, True) for cc in self.state.current.call_center_ids]
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
    current = state.current
    if short_id in state.recent_ids or (current is not None and dedup_id == current.dedup_id):
        return AgentStep(state, Outcome.DUPLICATE)
    recent_ids = [*state.recent_ids[-(RECENT_IDS_KEPT - 1):], short_id]
    last_offset = state.last_offset if offset is None else offset
    if implausible_date(event.date, now_ms) is not None:
        counted = msgspec.structs.replace(
            state, implausible_events=state.implausible_events + 1, recent_ids=recent_ids, last_offset=last_offset
        )
        return AgentStep(counted, Outcome.IMPLAUSIBLE)
    entry = TimelineEntry(event.date, event.event_timestamp or 0, short_id, event.on_duty_status)
    timeline, first_since = _timeline_of(state)
    # one agent's events are ordered by event time, then generation time, then identity
    if current is not None and (event.date, entry.event_timestamp_ms, dedup_id) < (
            current.date_ms, current.event_timestamp_ms or 0, current.dedup_id):
        late = msgspec.structs.replace(
            state, late_events=state.late_events + 1, recent_ids=recent_ids, last_offset=last_offset
        )
        return _correct(late, event, dedup_id, entry, timeline, first_since)

    since_ms = current.since_ms if current is not None and current.on_duty_status == event.on_duty_status else event.date
    timeline, first_since = _trimmed([*timeline, entry], first_since)
    call_center_ids = sorted(set(event.call_center_ids))
    known = state.known_call_centers
    if not known or any(cc not in known for cc in call_center_ids):
        known = sorted(set(known) | set(call_center_ids))
    new_state = msgspec.structs.replace(
        state,
        current=_snapshot(event, dedup_id, call_center_ids, since_ms),
        previous=current,
        agent_name=event.target.name or state.agent_name,
        version=state.version + 1,
        recent_ids=recent_ids,
        last_offset=last_offset,
        known_call_centers=known,
        timeline=timeline,
        timeline_since_ms=first_since,
    )
    if current is None or current.call_center_ids == call_center_ids:  # the usual case: no call center left
        left = []
    else:
        left = sorted(set(current.call_center_ids) - set(call_center_ids))
    return AgentStep(new_state, Outcome.APPLIED, left)


def _snapshot(event: AgentStatusEvent, dedup_id: str, call_center_ids: list[str], since_ms: int) -> AgentStatusSnapshot:
    return AgentStatusSnapshot(
        on_duty_status=event.on_duty_status,
        call_center_ids=call_center_ids,
        since_ms=since_ms,
        date_ms=event.date,
        availability_status=event.availability_status,
        on_duty_status_reason=event.on_duty_status_reason,
        event_timestamp_ms=event.event_timestamp,
        dedup_id=dedup_id,
    )


def _timeline_of(state: AgentState) -> tuple[list[TimelineEntry], int | None]:
    """The state's timeline and the ``since_ms`` at its start; for a state kept before timelines existed,
    one entry (the current event) whose ``since_ms`` is known."""
    current = state.current
    if state.timeline or current is None:
        return state.timeline, state.timeline_since_ms
    entry = TimelineEntry(current.date_ms, current.event_timestamp_ms or 0, current.dedup_id[:RECENT_ID_CHARS],
                          current.on_duty_status)
    return [entry], current.since_ms


def _trimmed(timeline: list[TimelineEntry], first_since: int | None) -> tuple[list[TimelineEntry], int | None]:
    """``timeline`` cut to its latest ``TIMELINE_KEPT`` events, with the ``since_ms`` at its new start."""
    while len(timeline) > TIMELINE_KEPT:
        dropped, first = timeline[0], timeline[1]
        if first.on_duty_status != dropped.on_duty_status:
            first_since = first.date_ms
        elif first_since is None:
            first_since = dropped.date_ms
        timeline = timeline[1:]
    return timeline, first_since


def _since_at(timeline: list[TimelineEntry], index: int, first_since: int | None) -> int:
    """When the agent entered the status of ``timeline[index]``: the start of the run of equal statuses."""
    status, start = timeline[index].on_duty_status, index
    while start > 0 and timeline[start - 1].on_duty_status == status:
        start -= 1
    if start == 0 and first_since is not None:
        return first_since
    return timeline[start].date_ms


def _correct(state: AgentState, event: AgentStatusEvent, dedup_id: str, entry: TimelineEntry,
             timeline: list[TimelineEntry], first_since: int | None) -> AgentStep:
    """A late event (``state`` has it counted): put it in its place in the timeline and correct the current
    ``since_ms`` and ``previous`` to what event-time order gives. Older than the whole timeline (which then
    no longer holds every event), it changes nothing else."""
    if not timeline or (first_since is not None and entry.order < timeline[0].order):
        return AgentStep(state, Outcome.LATE)
    position = bisect.bisect_left([e.order for e in timeline], entry.order)
    timeline, first_since = _trimmed([*timeline[:position], entry, *timeline[position:]], first_since)
    current, previous = state.current, state.previous
    assert current is not None
    last = len(timeline) - 1
    since_ms = _since_at(timeline, last, first_since)
    if last > 0 and timeline[last - 1] is entry:  # the late event comes right before the current one
        previous = _snapshot(event, dedup_id, sorted(set(event.call_center_ids)),
                             _since_at(timeline, last - 1, first_since))
    elif last > 0 and previous is not None and previous.dedup_id[:RECENT_ID_CHARS] == timeline[last - 1].dedup_id:
        previous = msgspec.structs.replace(previous, since_ms=_since_at(timeline, last - 1, first_since))
    corrected = since_ms != current.since_ms
    changed = {"current": msgspec.structs.replace(current, since_ms=since_ms), "previous": previous,
               "version": state.version + 1} if corrected or previous != state.previous else {}
    state = msgspec.structs.replace(state, timeline=timeline, timeline_since_ms=first_since, **changed)
    return AgentStep(state, Outcome.LATE, corrected=corrected)


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
