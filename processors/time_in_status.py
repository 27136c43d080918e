"""Exact time in status per agent and window, from event time: the pure core (no Faust, no Kafka).

One agent's timeline is a step function of event time (docs/semantics.md). The core keeps, per agent:

* ``AgentTimeline`` (small, written once per batch): the latest chunk of steps (``tail``), the accumulators of
  the windows not yet closed, how far the timeline has been counted, and which windows are closed;
* older steps in chunks (``ChunkStore``; an hour each in the Faust stage), read only for out-of-order events and
  corrections, written when a chunk is over or a late event lands in it, and dropped beyond the late horizon.

In-order events update the open accumulators incrementally (a few integer additions). An out-of-order event
changes the timeline on ``[date, next date)``: open windows get the exact difference, closed windows touched by
it are recomputed from the history and re-emitted with a higher revision. Closing a window (watermark past its
end) counts the open state up to the end and emits the window's full totals.

Revisions are the agent's applied-event count at emission, so they grow with every re-emission and a replay of
the same events reproduces the same records.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

import msgspec

from onduty.env import format_duration
from processors.counts import bump
from processors.event_time import DAY_MS, implausible_date
from processors.windows import closed_boundary, window_start
from schemas import AgentStatusEvent, dedup_identity
from schemas.time_in_status import AgentTimeInStatus, LateEvent, StatusInterval, WindowTotals


@dataclass(frozen=True)
class TimeInStatusConfig:
    """The parameters of the computation (from ``ProcessorSettings``)."""

    sizes_ms: tuple[int, ...] = (15 * 60_000, 3_600_000, DAY_MS)
    grace_ms: int = 5 * 60_000
    late_horizon_ms: int = 7 * DAY_MS
    chunk_ms: int = DAY_MS
    """Span of one history chunk; the tail chunk lives in the agent's timeline record."""

    def chunk_of(self, date_ms: int) -> int:
        return date_ms // self.chunk_ms


class Step(msgspec.Struct, array_like=True):
    """One applied event, as the timeline needs it (compact: stored by the thousand)."""

    date_ms: int
    tiebreak: int
    """``event_timestamp`` or 0: orders events with equal ``date``."""
    identity: str
    """The dedup identity; last part of the order key."""
    status: str
    reason: str
    availability: str
    call_centers: list[str]

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.date_ms, self.tiebreak, self.identity)


def step_of(event: AgentStatusEvent, identity: str | None = None) -> Step:
    """The timeline step of a decoded event."""
    return Step(
        date_ms=event.date,
        tiebreak=event.event_timestamp or 0,
        identity=identity or dedup_identity(event),
        status=event.on_duty_status,
        reason=event.on_duty_status_reason or "",
        availability=event.availability_status or "unknown",
        call_centers=sorted(set(event.call_center_ids)),  # strings once decoded
    )


class OpenWindow(msgspec.Struct, array_like=True):
    """Accumulators of one window that is not closed yet.

    Time is summed per agent state (status, reason, availability and call centers together: one dict addition
    per event and window), entries per kind; both are expanded into the agent's and each call center's totals
    only when the window is emitted or queried (``window_totals``). A key whose sum went back to zero is kept:
    its call centers still get a (zero) record, which replaces an earlier contribution of the agent.
    """

    size_ms: int
    start_ms: int
    ms_by_state: dict[str, int]
    """``state_key(step)`` -> milliseconds in that state within the window."""
    entries: dict[str, int]
    """``entry_key(...)`` -> number of such entries whose date lies in the window."""


class AgentTimeline(msgspec.Struct):
    """What the time-in-status stage keeps per agent (one table value, written once per batch)."""

    agent_id: str
    seq: int = 0
    """Events applied so far; the revision of the records emitted after the latest one."""
    tail_chunk: int = -1
    tail: list[Step] = []
    """Steps of chunk ``tail_chunk``, the chunk of the latest step, in order."""
    chunks: list[int] = []
    """Indexes of the older chunks held by the chunk store, ascending."""
    baseline: Step | None = None
    """The latest step of the chunks dropped beyond the late horizon (the state in effect before ``chunks``)."""
    counted_until_ms: int | None = None
    """The timeline has been added to the accumulators up to here (>= latest step, >= every closed boundary)."""
    closed_until_ms: dict[int, int] = {}
    """Per window size: every window ending at or before this time is closed (emitted, no accumulator)."""
    open_windows: dict[str, OpenWindow] = {}
    """Accumulators of open windows, key ``<size ms>:<start ms>``."""

    @property
    def last(self) -> Step | None:
        return self.tail[-1] if self.tail else None


class CallCenterContribution(msgspec.Struct, omit_defaults=True):
    """One agent's full totals for one call center and window (internal re-key topic, key = call center id)."""

    call_center_id: str
    agent_id: str
    window_size_ms: int
    window_start_ms: int
    revision: int
    totals: WindowTotals


class ChunkStore:
    """Older history chunks of one agent; the stage backs it with tables, tests with a dict.

    ``get`` returns a list the caller may change; ``put`` marks the chunk written.
    """

    def __init__(self, chunks: MutableMapping[int, list[Step]] | None = None) -> None:
        self.chunks: MutableMapping[int, list[Step]] = {} if chunks is None else chunks
        self.written: set[int] = set()
        self.dropped: set[int] = set()

    def get(self, index: int) -> list[Step]:
        return self.chunks.get(index, [])

    def put(self, index: int, steps: list[Step]) -> None:
        self.chunks[index] = steps
        self.written.add(index)
        self.dropped.discard(index)

    def drop(self, index: int) -> None:
        self.chunks.pop(index, None)
        self.dropped.add(index)
        self.written.discard(index)


@dataclass
class Emitted:
    """Records to publish, in order."""

    intervals: list[StatusInterval] = field(default_factory=list)
    agent_windows: list[AgentTimeInStatus] = field(default_factory=list)
    contributions: list[CallCenterContribution] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)

    def extend(self, other: "Emitted") -> None:
        self.intervals += other.intervals
        self.agent_windows += other.agent_windows
        self.contributions += other.contributions
        self.late += other.late


# ---------------------------------------------------------------------------------------------- totals


_key_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(tuple[str, str | None, str, list[str]])
_entry_decoder = msgspec.json.Decoder(tuple[str, bool, list[str]])


def state_key(step: Step) -> str:
    """Accumulator key of the step's state: what its time counts towards, for the agent and its call centers."""
    reason = step.reason if step.status == "unavailable" else None
    return _key_encoder.encode((step.status, reason, step.availability, step.call_centers)).decode()


def entry_key(status: str, agent_entry: bool, call_centers: list[str]) -> str:
    """Accumulator key of an entry into ``status``: for the agent (or not) and for these call centers."""
    return _key_encoder.encode((status, agent_entry, call_centers)).decode()


_decoded_keys: dict[str, tuple] = {}
"""Accumulator keys decoded so far: an agent has few distinct states, each is decoded once (bounded below)."""
_DECODED_KEYS_KEPT = 100_000


def _decoded(key: str, decoder: msgspec.json.Decoder) -> tuple:
    decoded = _decoded_keys.get(key)
    if decoded is None:
        if len(_decoded_keys) >= _DECODED_KEYS_KEPT:
            _decoded_keys.clear()
        decoded = _decoded_keys[key] = decoder.decode(key)
    return decoded


def window_totals(window: OpenWindow, agent_only: bool = False) -> tuple[WindowTotals, dict[str, WindowTotals]]:
    """The agent's totals and each call center's from a window's accumulators."""
    agent = empty_totals()
    call_centers_seen: list[str] | None = None
    uniform = True  # every key has the same call centers, every entry counts for the agent and all of them
    for key, ms in window.ms_by_state.items():
        status, reason, availability, call_centers = _decoded(key, _state_decoder)
        if ms:
            _add_ms(agent, status, reason, availability, ms)
        if call_centers_seen is None:
            call_centers_seen = call_centers
        elif call_centers != call_centers_seen:
            uniform = False
    for key, count in window.entries.items():
        status, agent_entry, call_centers = _decoded(key, _entry_decoder)
        if agent_entry and count:
            bump(agent.entries_by_status, status, count)
        if call_centers_seen is None:
            call_centers_seen = call_centers
        if not agent_entry or call_centers != call_centers_seen:
            uniform = False
    if agent_only:
        return agent, {}
    if uniform:  # the common case: each call center's totals are the agent's, one object shared by the records
        return agent, {cc: agent for cc in call_centers_seen or ()}  # (emitted totals are never changed)
    per_cc: dict[str, WindowTotals] = {}
    for key, ms in window.ms_by_state.items():
        status, reason, availability, call_centers = _decoded(key, _state_decoder)
        for cc in call_centers:
            totals = totals_of(per_cc, cc)
            if ms:
                _add_ms(totals, status, reason, availability, ms)
    for key, count in window.entries.items():
        status, _, call_centers = _decoded(key, _entry_decoder)
        for cc in call_centers:
            totals = totals_of(per_cc, cc)
            if count:
                bump(totals.entries_by_status, status, count)
    return agent, per_cc


def add_time(totals: WindowTotals, step: Step, ms: int) -> None:
    """Add (or, negative, remove) ``ms`` of ``step``'s state to the totals."""
    _add_ms(totals, step.status, step.reason if step.status == "unavailable" else None, step.availability, ms)


def _add_ms(totals: WindowTotals, status: str, unavailable_reason: str | None, availability: str, ms: int) -> None:
    bump(totals.ms_by_status, status, ms)
    if unavailable_reason is not None:
        bump(totals.ms_by_unavailable_reason, unavailable_reason, ms)
    bump(totals.ms_by_availability, availability, ms)


def add_totals(into: WindowTotals, other: WindowTotals, sign: int = 1) -> None:
    for mine, theirs in (
        (into.ms_by_status, other.ms_by_status),
        (into.ms_by_unavailable_reason, other.ms_by_unavailable_reason),
        (into.ms_by_availability, other.ms_by_availability),
        (into.entries_by_status, other.entries_by_status),
    ):
        for key, value in theirs.items():
            bump(mine, key, sign * value)


def entries(step: Step, previous: Step | None) -> tuple[bool, list[str]]:
    """Is ``step`` an entry into its status for the agent, and for which of its call centers."""
    if previous is None or previous.status != step.status:
        return True, step.call_centers
    return False, [cc for cc in step.call_centers if cc not in previous.call_centers]


def window_key(size_ms: int, start_ms: int) -> str:
    return f"{size_ms}:{start_ms}"


def empty_totals() -> WindowTotals:
    return WindowTotals({}, {}, {}, {})


def totals_of(by_call_center: dict[str, WindowTotals], call_center_id: str) -> WindowTotals:
    """The call center's totals in ``by_call_center``, added empty if missing."""
    totals = by_call_center.get(call_center_id)
    if totals is None:
        totals = by_call_center[call_center_id] = empty_totals()
    return totals


# ---------------------------------------------------------------------------------------------- the core


class TimeInStatusCore:
    """The rules, parameterised by a config; every method is a pure function of its arguments (memoised)."""

    def __init__(self, config: TimeInStatusConfig) -> None:
        self.config = config
        self.sizes = tuple(sorted(config.sizes_ms))
        self._boundaries_cache: tuple[int, dict[int, int], int] | None = None
        self._keyed_step: Step | None = None
        self._step_key = ""

    # -- classification

    def rejection(self, date_ms: int, watermark_ms: int | None, now_ms: int) -> str | None:
        """Why an event cannot be counted (None: it can)."""
        reason = implausible_date(date_ms, now_ms)
        if reason is not None:
            return reason
        if watermark_ms is not None and date_ms < watermark_ms - self.config.late_horizon_ms:
            return "beyond_late_horizon"
        return None

    def plausible(self, date_ms: int, now_ms: int) -> bool:
        """May this date advance a watermark."""
        return implausible_date(date_ms, now_ms) is None

    def watermark(self, max_date_ms: int | None) -> int | None:
        return None if max_date_ms is None else max_date_ms - self.config.grace_ms

    # -- applying one event

    def apply(
        self,
        state: AgentTimeline,
        chunks: ChunkStore,
        event: AgentStatusEvent,
        watermark_ms: int | None,
        now_ms: int,
        identity: str | None = None,
        out: Emitted | None = None,
    ) -> tuple[AgentTimeline, Emitted]:
        """Apply one event; the state is changed in place and returned with the records to publish (appended to
        ``out`` when given)."""
        out = Emitted() if out is None else out
        reason = self.rejection(event.date, watermark_ms, now_ms)
        if reason is not None:
            out.late.append(LateEvent(state.agent_id, reason, event.date, watermark_ms, event))
            return state, out
        step = step_of(event, identity)
        last = state.last
        if last is None or step.key > last.key:
            dirty = self._append(state, chunks, step, out)
        else:
            inserted = self._insert(state, chunks, step, out)
            if inserted is None:  # duplicate
                return state, out
            dirty = inserted
        state.seq += 1
        if dirty:
            # the step whose time the new one took: its call centers may have lost all time in those windows
            replaced = last if last is None or step.key > last.key else self._predecessor(state, chunks, step)
            self._emit_closed(state, chunks, dirty, out, replaced.call_centers if replaced else [])
        return state, out

    def _predecessor(self, state: AgentTimeline, chunks: ChunkStore, step: Step) -> Step | None:
        previous, steps = self.timeline_from(state, chunks, step.date_ms)
        earlier = [s for s in steps if s.key < step.key]
        return earlier[-1] if earlier else previous

    def _append(self, state: AgentTimeline, chunks: ChunkStore, step: Step, out: Emitted) -> set[tuple[int, int]]:
        """An event after the latest one: the previous state ends at its date."""
        previous = state.last
        dirty: set[tuple[int, int]] = set()
        counted = state.counted_until_ms
        if previous is None or counted is None:
            state.counted_until_ms = step.date_ms
        elif step.date_ms >= counted:
            self._add_span(state, previous, counted, step.date_ms, 1, dirty)
            state.counted_until_ms = step.date_ms
        else:  # windows were closed with the previous state counted past this date
            self._add_span(state, previous, step.date_ms, counted, -1, dirty)
            self._add_span(state, step, step.date_ms, counted, 1, dirty)
        self._add_entry(state, step, previous, 1, dirty)
        if previous is not None and step.date_ms > previous.date_ms:
            out.intervals.append(self._interval(state.agent_id, previous, step.date_ms, late=False))
        chunk = step.date_ms // self.config.chunk_ms  # chunk_of, inlined
        if chunk != state.tail_chunk:
            if state.tail:
                chunks.put(state.tail_chunk, state.tail)
                state.chunks = sorted({*state.chunks, state.tail_chunk})
            state.tail_chunk, state.tail = chunk, [step]
        else:
            state.tail.append(step)
        return dirty

    def _insert(
        self, state: AgentTimeline, chunks: ChunkStore, step: Step, out: Emitted
    ) -> set[tuple[int, int]] | None:
        """An event before the latest one: it replaces its predecessor's state until the next step."""
        chunk = self.config.chunk_of(step.date_ms)
        steps = state.tail if chunk == state.tail_chunk else chunks.get(chunk)
        keys = [s.key for s in steps]
        index = bisect.bisect_left(keys, step.key)
        if index < len(steps) and steps[index].key == step.key:
            return None
        previous = steps[index - 1] if index > 0 else self._before(state, chunks, chunk)
        following = steps[index] if index < len(steps) else self._after(state, chunks, chunk)
        assert following is not None, "an out-of-order step always has a successor"
        updated = [*steps[:index], step, *steps[index:]]
        if chunk == state.tail_chunk:
            state.tail = updated
        else:
            chunks.put(chunk, updated)
            if chunk not in state.chunks:
                state.chunks = sorted({*state.chunks, chunk})
        dirty: set[tuple[int, int]] = set()
        end = following.date_ms
        if previous is not None:
            self._add_span(state, previous, step.date_ms, end, -1, dirty)
        self._add_span(state, step, step.date_ms, end, 1, dirty)
        self._add_entry(state, following, previous, -1, dirty)
        self._add_entry(state, step, previous, 1, dirty)
        self._add_entry(state, following, step, 1, dirty)
        if previous is not None and step.date_ms > previous.date_ms:
            out.intervals.append(self._interval(state.agent_id, previous, step.date_ms, late=True))
        if end > step.date_ms:
            out.intervals.append(self._interval(state.agent_id, step, end, late=True))
        return dirty

    def _before(self, state: AgentTimeline, chunks: ChunkStore, chunk: int) -> Step | None:
        """The latest step in a chunk before ``chunk``, else the baseline."""
        for index in reversed([c for c in state.chunks if c < chunk]):
            steps = chunks.get(index)
            if steps:
                return steps[-1]
        return state.baseline

    def _after(self, state: AgentTimeline, chunks: ChunkStore, chunk: int) -> Step | None:
        """The first step in a chunk after ``chunk``."""
        for index in state.chunks:
            if index > chunk:
                steps = chunks.get(index)
                if steps:
                    return steps[0]
        if state.tail_chunk > chunk and state.tail:
            return state.tail[0]
        return None

    # -- accumulators

    def _window(self, state: AgentTimeline, size: int, start: int) -> OpenWindow:
        key = f"{size}:{start}"  # window_key
        window = state.open_windows.get(key)
        if window is None:
            window = state.open_windows[key] = OpenWindow(size, start, {}, {})
        return window

    def _add_span(
        self, state: AgentTimeline, step: Step, start: int, end: int, sign: int, dirty: set[tuple[int, int]]
    ) -> None:
        if end <= start:
            return
        if step is self._keyed_step:  # an in-order event counts its predecessor's state, then close() again
            key = self._step_key
        else:
            key = self._step_key = state_key(step)
            self._keyed_step = step
        closed_until = state.closed_until_ms
        open_windows = state.open_windows
        for size in self.sizes:
            closed = closed_until.get(size)
            # ``cut_interval``, inlined (it runs for every event and window size)
            window_start_ms = start - start % size
            cursor = start
            while cursor < end:
                window_end = window_start_ms + size
                piece_end = window_end if window_end < end else end
                if closed is not None and window_end <= closed:
                    dirty.add((size, window_start_ms))
                else:
                    window = open_windows.get(f"{size}:{window_start_ms}")  # _window, inlined
                    if window is None:
                        window = self._window(state, size, window_start_ms)
                    by_state = window.ms_by_state
                    by_state[key] = by_state.get(key, 0) + sign * (piece_end - cursor)
                cursor = piece_end
                window_start_ms = window_end

    def _add_entry(
        self, state: AgentTimeline, step: Step, previous: Step | None, sign: int, dirty: set[tuple[int, int]]
    ) -> None:
        agent_entry, cc_entries = entries(step, previous)
        if not agent_entry and not cc_entries:
            return
        key = entry_key(step.status, agent_entry, cc_entries)
        date_ms = step.date_ms
        for size in self.sizes:
            start = date_ms - date_ms % size  # window_start
            closed = state.closed_until_ms.get(size)
            if closed is not None and start + size <= closed:
                dirty.add((size, start))
                continue
            window = state.open_windows.get(f"{size}:{start}")  # _window, inlined
            if window is None:
                window = self._window(state, size, start)
            counts = window.entries
            counts[key] = counts.get(key, 0) + sign

    # -- closing windows

    def close(
        self, state: AgentTimeline, chunks: ChunkStore, watermark_ms: int | None, out: Emitted | None = None,
    ) -> tuple[AgentTimeline, Emitted]:
        """Close every window of the agent that ends at or before the watermark; drop history beyond the horizon.
        The records are appended to ``out`` when given."""
        out = Emitted() if out is None else out
        last = state.last
        if watermark_ms is None or last is None or state.counted_until_ms is None:
            return state, out
        boundaries, advance_to = self._boundaries(watermark_ms)
        if advance_to > state.counted_until_ms:
            self._add_span(state, last, state.counted_until_ms, advance_to, 1, set())
            state.counted_until_ms = advance_to
        closing = [
            window for window in state.open_windows.values()
            if window.start_ms + window.size_ms <= boundaries[window.size_ms]
        ]
        if closing:
            closing.sort(key=lambda w: (w.start_ms, w.size_ms))
            for window in closing:
                del state.open_windows[window_key(window.size_ms, window.start_ms)]
                agent, per_cc = window_totals(window)
                self._emit(state, window.size_ms, window.start_ms, agent, per_cc, out)
        closed_until = state.closed_until_ms
        for size, boundary in boundaries.items():
            if boundary > closed_until.get(size, boundary - 1):
                closed_until[size] = boundary
        self._prune(state, chunks, watermark_ms)
        return state, out

    def _boundaries(self, watermark_ms: int) -> tuple[dict[int, int], int]:
        """Per size, the end of the windows closed at ``watermark_ms``, and the latest of them (the agents of a
        partition are closed at one watermark: computed once for it)."""
        cached = self._boundaries_cache
        if cached is None or cached[0] != watermark_ms:
            boundaries = {size: closed_boundary(watermark_ms, size) for size in self.sizes}
            cached = self._boundaries_cache = (watermark_ms, boundaries, max(boundaries.values()))
        return cached[1], cached[2]

    def next_close_ms(self, state: AgentTimeline) -> int | None:
        """The watermark at which the agent's next window closes (None: nothing to close)."""
        if state.counted_until_ms is None:
            return None
        ends = [w.start_ms + w.size_ms for w in state.open_windows.values()]
        ends += [window_start(state.counted_until_ms, size) + size for size in self.sizes]
        return min(ends)

    def _prune(self, state: AgentTimeline, chunks: ChunkStore, watermark_ms: int) -> None:
        # an accepted event is at most late_horizon behind; its largest window may start one size earlier
        floor_ms = watermark_ms - self.config.late_horizon_ms - self.sizes[-1]
        chunk_ms = self.config.chunk_ms
        if not state.chunks or (state.chunks[0] + 1) * chunk_ms > floor_ms:  # ascending: nothing expired
            return
        expired = [c for c in state.chunks if (c + 1) * chunk_ms <= floor_ms]
        newest = chunks.get(expired[-1])
        if newest:
            state.baseline = newest[-1]
        for index in expired:
            chunks.drop(index)
        state.chunks = [c for c in state.chunks if c not in expired]

    # -- closed windows: recompute from the history and re-emit

    def _emit_closed(
        self, state: AgentTimeline, chunks: ChunkStore, dirty: set[tuple[int, int]], out: Emitted,
        also_call_centers: list[str],
    ) -> None:
        windows = sorted(dirty, key=lambda w: (w[1], w[0]))
        previous, steps = self.timeline_from(state, chunks, min(start for _, start in windows))
        for size, start in windows:
            agent, per_cc = self.recompute(previous, steps, start, start + size)
            for cc in also_call_centers:
                totals_of(per_cc, cc)
            self._emit(state, size, start, agent, per_cc, out)

    def timeline_from(self, state: AgentTimeline, chunks: ChunkStore, from_ms: int) -> tuple[Step | None, list[Step]]:
        """The step in effect just before ``from_ms`` and every step at or after it, in order."""
        first_chunk = self.config.chunk_of(from_ms)
        steps: list[Step] = []
        for index in state.chunks:
            if index >= first_chunk:
                steps += chunks.get(index)
        if state.tail_chunk >= first_chunk:
            steps += state.tail
        split = bisect.bisect_left([s.date_ms for s in steps], from_ms)
        if split > 0:
            return steps[split - 1], steps[split:]
        return self._before(state, chunks, first_chunk) if state.tail_chunk >= first_chunk else state.last, steps

    def recompute(
        self, previous: Step | None, steps: list[Step], start: int, end: int
    ) -> tuple[WindowTotals, dict[str, WindowTotals]]:
        """Full totals of a closed window ``[start, end)`` from the steps (``previous``: in effect before them)."""
        agent = empty_totals()
        per_cc: dict[str, WindowTotals] = {}
        cursor = start
        index = bisect.bisect_left([s.date_ms for s in steps], start)
        current = steps[index - 1] if index > 0 else previous
        # every call center the agent was on duty for in the window gets a record, zero or not, so that a
        # correction that removes the agent from a call center replaces its earlier contribution
        for step in steps[index:]:
            if step.date_ms >= end:
                break
            if current is not None:
                self._count(agent, per_cc, current, cursor, step.date_ms)
            agent_entry, cc_entries = entries(step, current)
            if agent_entry:
                bump(agent.entries_by_status, step.status, 1)
            for cc in step.call_centers:
                totals_of(per_cc, cc)
            for cc in cc_entries:
                bump(per_cc[cc].entries_by_status, step.status, 1)
            current, cursor = step, step.date_ms
        if current is not None:
            self._count(agent, per_cc, current, cursor, end)
        return agent, per_cc

    @staticmethod
    def _count(agent: WindowTotals, per_cc: dict[str, WindowTotals], step: Step, start: int, end: int) -> None:
        for cc in step.call_centers:
            totals_of(per_cc, cc)
        if end <= start:
            return
        add_time(agent, step, end - start)
        for cc in step.call_centers:
            add_time(totals_of(per_cc, cc), step, end - start)

    def _emit(
        self, state: AgentTimeline, size: int, start: int, agent: WindowTotals,
        per_cc: dict[str, WindowTotals], out: Emitted,
    ) -> None:
        out.agent_windows.append(self.agent_record(state.agent_id, size, start, state.seq, True, agent))
        for cc in sorted(per_cc):
            out.contributions.append(
                CallCenterContribution(cc, state.agent_id, size, start, state.seq, per_cc[cc])
            )

    @staticmethod
    def agent_record(
        agent_id: str, size: int, start: int, revision: int, final: bool, totals: WindowTotals
    ) -> AgentTimeInStatus:
        return AgentTimeInStatus(
            agent_id=agent_id, window_size=format_duration(size), window_size_ms=size, window_start_ms=start,
            window_end_ms=start + size, revision=revision, final=final, totals=totals,
        )

    # -- queries

    def windows_between(
        self, state: AgentTimeline, chunks: ChunkStore, size: int, from_ms: int, to_ms: int
    ) -> list[AgentTimeInStatus]:
        """The agent's windows of ``size`` starting in ``[from_ms, to_ms)``: closed ones recomputed from the
        history, open ones as accumulated so far (``final`` false). A closed window that starts before
        ``history_from_ms`` is left out: the steps it needs were dropped beyond the late horizon (its record
        was published when it closed)."""
        if state.counted_until_ms is None:
            return []
        kept_from = self.history_from_ms(state)
        first = window_start(from_ms, size)
        if first < from_ms:
            first += size
        records = []
        previous, steps = self.timeline_from(state, chunks, first)
        closed = state.closed_until_ms.get(size)
        start = first
        while start < to_ms and start <= state.counted_until_ms:
            if closed is not None and start + size <= closed:
                if kept_from is not None and start < kept_from:
                    start += size
                    continue
                agent, _ = self.recompute(previous, steps, start, start + size)
                if agent.ms_by_status or agent.entries_by_status:  # before the first event: nothing known
                    records.append(self.agent_record(state.agent_id, size, start, state.seq, True, agent))
            else:
                window = state.open_windows.get(window_key(size, start))
                if window is not None:
                    agent, _ = window_totals(window, agent_only=True)
                    records.append(self.agent_record(state.agent_id, size, start, state.seq, False, agent))
            start += size
        return records

    @staticmethod
    def history_from_ms(state: AgentTimeline) -> int | None:
        """Where the agent's history is known in full: from the latest step dropped beyond the late horizon
        (in effect until the next kept step); ``None`` while nothing was dropped."""
        return state.baseline.date_ms if state.baseline is not None else None

    @staticmethod
    def _interval(agent_id: str, step: Step, end_ms: int, late: bool) -> StatusInterval:
        return StatusInterval(
            agent_id=agent_id, on_duty_status=step.status, start_ms=step.date_ms, end_ms=end_ms,
            duration_ms=end_ms - step.date_ms, call_center_ids=list(step.call_centers),
            on_duty_status_reason=step.reason, availability_status=step.availability, late=late,
        )


def apply_all(
    core: TimeInStatusCore, state: AgentTimeline, chunks: ChunkStore, events: Iterable[AgentStatusEvent],
    watermark_ms: int | None, now_ms: int,
) -> Emitted:
    """Apply several events of one agent (a convenience for tests and tools)."""
    out = Emitted()
    for event in events:
        _, emitted = core.apply(state, chunks, event, watermark_ms, now_ms)
        out.extend(emitted)
    return out
