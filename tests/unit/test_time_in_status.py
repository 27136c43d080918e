"""Time in status, pure core: worked examples, and the harness the property tests share.

``Partition`` plays one source partition: it applies events in arrival order, advances the watermark, closes
windows, and feeds the agents' call-center contributions to the call-center rules, keeping the latest record per
output key like a consumer of the compacted topics would. ``ground_truth`` computes the expected totals
independently, from the semantics alone.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
import pytest

from processors.time_in_status import (
    AgentTimeline,
    ChunkStore,
    Step,
    TimeInStatusConfig,
    TimeInStatusCore,
)
from processors.time_in_status_callcenters import CallCenterTimeline, apply_contribution, close
from schemas import AgentStatusEvent, AgentTarget, dedup_identity
from schemas.time_in_status import WindowTotals

BASE = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # a UTC midnight in 2023
NOW = BASE + 30 * 86_400_000
M = 60_000


def event(agent: str, date: int, status: str, ccs=("cc1",), reason: str | None = None,
          availability: str | None = "available", ts: int | None = None) -> AgentStatusEvent:
    return AgentStatusEvent(
        target=AgentTarget(id=agent), on_duty_status=status, date=date, call_center_ids=list(ccs),
        on_duty_status_reason=reason, availability_status=availability, event_timestamp=ts,
    )


def as_dict(totals: WindowTotals) -> dict[str, dict[str, int]]:
    return {name: value for name, value in msgspec.structs.asdict(totals).items() if value}


class Partition:
    """One source partition of the agent stage and the call-center stage behind it, in memory."""

    def __init__(self, config: TimeInStatusConfig, now_ms: int = NOW) -> None:
        self.config = config
        self.core = TimeInStatusCore(config)
        self.now_ms = now_ms
        self.states: dict[str, AgentTimeline] = {}
        self.chunks: dict[str, dict[int, list[Step]]] = defaultdict(dict)
        self.max_date: int | None = None
        self.cc_states: dict[str, CallCenterTimeline] = {}
        self.agent_records: dict[tuple[str, int, int], tuple[int, dict]] = {}
        self.cc_records: dict[tuple[str, int, int], tuple[int, dict]] = {}
        self.late: list = []
        self.intervals: list = []

    @property
    def watermark(self) -> int | None:
        return self.core.watermark(self.max_date)

    def feed(self, events: list[AgentStatusEvent]) -> None:
        for item in events:
            state = self.states.setdefault(item.agent_id, AgentTimeline(item.agent_id))
            _, out = self.core.apply(state, ChunkStore(self.chunks[item.agent_id]), item, self.watermark, self.now_ms)
            if self.core.plausible(item.date, self.now_ms):
                self.max_date = item.date if self.max_date is None else max(self.max_date, item.date)
            self._collect(out)
            self.close(self.watermark)

    def close(self, watermark: int | None) -> None:
        for agent_id, state in self.states.items():
            _, out = self.core.close(state, ChunkStore(self.chunks[agent_id]), watermark)
            self._collect(out)
        for cc_state in self.cc_states.values():
            self._collect_cc(close(cc_state, watermark, self.config.late_horizon_ms))

    def finish(self, until_ms: int) -> None:
        """Advance the watermark to ``until_ms`` (as if later events had come) and close."""
        self.close(until_ms)

    def restart(self) -> None:
        """Round-trip every state through its encoding, as a worker restarted from its changelogs would."""
        self.states = {a: msgspec.json.decode(msgspec.json.encode(s), type=AgentTimeline) for a, s in self.states.items()}
        self.chunks = defaultdict(dict, {
            a: msgspec.json.decode(msgspec.json.encode(c), type=dict[int, list[Step]]) for a, c in self.chunks.items()
        })
        self.cc_states = {c: msgspec.json.decode(msgspec.json.encode(s), type=CallCenterTimeline)
                          for c, s in self.cc_states.items()}

    def _collect(self, out) -> None:
        for record in out.agent_windows:
            key = (record.agent_id, record.window_size_ms, record.window_start_ms)
            previous = self.agent_records.get(key)
            assert previous is None or record.revision > previous[0], f"revision did not grow for {key}"
            assert record.final
            self.agent_records[key] = (record.revision, as_dict(record.totals))
        for contribution in out.contributions:
            state = self.cc_states.setdefault(contribution.call_center_id,
                                              CallCenterTimeline(contribution.call_center_id))
            self._collect_cc(apply_contribution(state, contribution, self.watermark))
        self.late += out.late
        self.intervals += out.intervals

    def _collect_cc(self, records) -> None:
        for record in records:
            key = (record.call_center_id, record.window_size_ms, record.window_start_ms)
            previous = self.cc_records.get(key)
            assert previous is None or record.revision > previous[0]
            self.cc_records[key] = (record.revision, as_dict(record.totals))

    def agent_totals(self) -> dict:
        return {key: totals for key, (_, totals) in self.agent_records.items() if totals}

    def cc_totals(self) -> dict:
        return {key: totals for key, (_, totals) in self.cc_records.items() if totals}


def _add(totals: dict, name: str, key: str, amount: int) -> None:
    if amount:
        bucket = totals.setdefault(name, {})
        bucket[key] = bucket.get(key, 0) + amount


def ground_truth(events: list[AgentStatusEvent], sizes: tuple[int, ...], until_ms: int) -> tuple[dict, dict]:
    """Expected agent and call-center totals of every window ending at or before ``until_ms``.

    Straight from the semantics: dedupe by identity, order by (date, event_timestamp, identity), each step holds
    until the next; overlaps with each window computed directly.
    """
    by_agent: dict[str, dict[str, AgentStatusEvent]] = defaultdict(dict)
    for item in events:
        by_agent[item.agent_id][dedup_identity(item)] = item
    agents: dict = {}
    ccs: dict = {}
    for agent_id, unique in by_agent.items():
        ordered = sorted(unique.items(), key=lambda kv: (kv[1].date, kv[1].event_timestamp or 0, kv[0]))
        steps = [item for _, item in ordered]
        for size in sizes:
            first = steps[0].date - steps[0].date % size
            for start in range(first, until_ms - size + 1, size):
                end = start + size
                agent_totals: dict = {}
                cc_totals: dict = defaultdict(dict)
                for i, step in enumerate(steps):
                    step_end = steps[i + 1].date if i + 1 < len(steps) else until_ms
                    ms = max(0, min(end, step_end) - max(start, step.date))
                    previous = steps[i - 1] if i else None
                    entry = start <= step.date < end and (previous is None or previous.on_duty_status != step.on_duty_status)
                    targets = [agent_totals] + [cc_totals[c] for c in sorted(set(step.call_center_ids))]
                    for j, target in enumerate(targets):
                        _add(target, "ms_by_status", step.on_duty_status, ms)
                        if step.on_duty_status == "unavailable":
                            _add(target, "ms_by_unavailable_reason", step.on_duty_status_reason or "", ms)
                        _add(target, "ms_by_availability", step.availability_status or "unknown", ms)
                        cc_entry = entry or (j > 0 and start <= step.date < end and previous is not None
                                             and targets and sorted(set(step.call_center_ids))[j - 1]
                                             not in previous.call_center_ids)
                        if (entry if j == 0 else cc_entry):
                            _add(target, "entries_by_status", step.on_duty_status, 1)
                if agent_totals:
                    agents[(agent_id, size, start)] = agent_totals
                for cc, totals in cc_totals.items():
                    if totals:
                        merged = ccs.setdefault((cc, size, start), {})
                        for name, bucket in totals.items():
                            for key, value in bucket.items():
                                _add(merged, name, key, value)
    return agents, ccs


SMALL = TimeInStatusConfig(sizes_ms=(15 * M, 3_600_000, 86_400_000), grace_ms=5 * M, late_horizon_ms=7 * 86_400_000)


def run(events, config=SMALL, until=None):
    partition = Partition(config)
    partition.feed(events)
    until = until if until is not None else max(e.date for e in events) + 86_400_000
    partition.finish(until)
    return partition, until


def test_in_order_day_matches_ground_truth() -> None:
    events = [
        event("a1", BASE + 8 * 3_600_000, "available", ccs=("cc1", "cc2")),
        event("a1", BASE + 8 * 3_600_000 + 7 * M, "occupied", ccs=("cc1", "cc2"), availability="unavailable"),
        event("a1", BASE + 8 * 3_600_000 + 20 * M, "wrapup", ccs=("cc1",)),
        event("a1", BASE + 9 * 3_600_000, "unavailable", ccs=("cc1",), reason="lunch"),
        event("a1", BASE + 10 * 3_600_000, "available", ccs=()),
    ]
    partition, until = run(events)
    agents, ccs = ground_truth(events, SMALL.sizes_ms, until)
    assert partition.agent_totals() == agents
    assert partition.cc_totals() == ccs
    first = partition.agent_totals()[("a1", 15 * M, BASE + 8 * 3_600_000)]
    # 7 minutes available, then 8 of the 15 occupied; one entry into each
    assert first == {
        "ms_by_status": {"available": 7 * M, "occupied": 8 * M},
        "ms_by_availability": {"available": 7 * M, "unavailable": 8 * M},
        "entries_by_status": {"available": 1, "occupied": 1},
    }


def test_late_event_inside_the_horizon_reemits_the_closed_window_with_higher_revision() -> None:
    partition = Partition(SMALL)
    partition.feed([event("a1", BASE, "available"), event("a1", BASE + 60 * M, "occupied")])
    key = ("a1", 15 * M, BASE)
    revision, totals = partition.agent_records[key]
    assert totals["ms_by_status"] == {"available": 15 * M}
    partition.feed([event("a1", BASE + 5 * M, "unavailable", reason="break")])  # 55 minutes late
    new_revision, totals = partition.agent_records[key]
    assert new_revision > revision
    assert totals["ms_by_status"] == {"available": 5 * M, "unavailable": 10 * M}
    assert totals["ms_by_unavailable_reason"] == {"break": 10 * M}


def test_duplicate_changes_nothing_and_emits_nothing() -> None:
    core = TimeInStatusCore(SMALL)
    state, store = AgentTimeline("a1"), ChunkStore()
    first = event("a1", BASE, "available")
    core.apply(state, store, first, None, NOW)
    before = msgspec.json.encode(state)
    _, out = core.apply(state, store, event("a1", BASE, "available"), None, NOW)
    assert msgspec.json.encode(state) == before
    assert not (out.intervals or out.agent_windows or out.contributions or out.late)


@pytest.mark.parametrize(
    ("date", "reason"),
    [
        (1_620_328_863, "date_before_2001"),  # seconds instead of milliseconds
        (16_203_288_633_333, "date_in_future"),  # the spec sample's event_timestamp: one digit too many
        (BASE - 8 * 86_400_000, "beyond_late_horizon"),  # more than 7 days behind the watermark
    ],
)
def test_implausible_or_too_late_dates_go_to_late_events_and_never_advance_the_watermark(date: int, reason: str) -> None:
    partition = Partition(SMALL)
    partition.feed([event("a1", BASE, "available")])
    watermark = partition.watermark
    partition.feed([event("a2", date, "busy")])
    assert [(r.agent_id, r.reason) for r in partition.late] == [("a2", reason)]
    assert partition.watermark == watermark


def test_intervals_are_published_and_a_late_event_supersedes_by_start() -> None:
    partition = Partition(SMALL)
    partition.feed([event("a1", BASE, "available"), event("a1", BASE + 10 * M, "busy"),
                    event("a1", BASE + 4 * M, "occupied")])
    latest = {r.start_ms: (r.on_duty_status, r.duration_ms) for r in partition.intervals}
    assert latest == {BASE: ("available", 4 * M), BASE + 4 * M: ("occupied", 6 * M)}


def test_history_is_dropped_beyond_the_horizon() -> None:
    config = TimeInStatusConfig(sizes_ms=(15 * M,), grace_ms=0, late_horizon_ms=86_400_000)
    partition = Partition(config)
    partition.feed([event("a1", BASE + day * 86_400_000, "available") for day in range(6)])
    state = partition.states["a1"]
    # chunks of days 0..3 are gone (beyond one day of horizon plus one window); the baseline remembers day 3
    assert len(state.chunks) + 1 <= 3
    assert state.baseline is not None
    assert set(partition.chunks["a1"]) == set(state.chunks)



def test_a_share_for_a_forgotten_call_center_window_never_replaces_its_sum() -> None:
    from processors.time_in_status import CallCenterContribution
    from processors.time_in_status_callcenters import is_forgotten

    horizon, size = 86_400_000, 60 * M

    def share(agent: str, status: str, start: int) -> CallCenterContribution:
        totals = WindowTotals(ms_by_status={status: size})
        return CallCenterContribution("cc1", agent, size, start, 1, totals)

    state = CallCenterTimeline("cc1")
    x1 = share("x1", "busy", BASE)
    assert not is_forgotten(state, x1, horizon)  # nothing closed yet
    [emitted] = apply_contribution(state, x1, BASE + size)
    assert emitted.totals.ms_by_status == {"busy": size}
    close(state, BASE + 10 * horizon, horizon)  # a source partition ten days ahead: the window is forgotten
    late = share("y0", "available", BASE)  # a partition whose first events are that old
    assert is_forgotten(state, late, horizon)
    assert not is_forgotten(state, share("y0", "available", BASE + 9 * horizon), horizon)  # within the horizon

def test_query_gives_closed_windows_from_history_and_open_ones_as_counted_so_far() -> None:
    core = TimeInStatusCore(SMALL)
    partition = Partition(SMALL)
    partition.feed([event("a1", BASE, "available"), event("a1", BASE + 40 * M, "busy")])
    records = core.windows_between(partition.states["a1"], ChunkStore(partition.chunks["a1"]), 15 * M,
                                   BASE, BASE + 60 * M)
    assert [(r.window_start_ms, r.final, r.totals.ms_by_status) for r in records] == [
        (BASE, True, {"available": 15 * M}),
        (BASE + 15 * M, True, {"available": 15 * M}),
        (BASE + 30 * M, False, {"available": 10 * M}),
    ]


def test_query_leaves_out_closed_windows_whose_history_was_dropped_beyond_the_late_horizon() -> None:
    day = 86_400_000
    config = TimeInStatusConfig(sizes_ms=(day,), grace_ms=0, late_horizon_ms=2 * day, chunk_ms=day)
    core, state, chunks = TimeInStatusCore(config), AgentTimeline("a1"), ChunkStore()
    published = {}
    for date, status in [(BASE + day, "available"), (BASE + day + day // 2, "busy"), (BASE + 2 * day, "wrapup"),
                         (BASE + 3 * day, "lunching"), (BASE + 10 * day, "available")]:
        watermark = core.watermark(date)
        _, emitted = core.apply(state, chunks, event("a1", date, status), watermark, NOW)
        _, emitted = core.close(state, chunks, watermark, emitted)
        published.update({r.window_start_ms: r.totals.ms_by_status for r in emitted.agent_windows})
    assert published[BASE + day] == {"available": day // 2, "busy": day // 2}
    kept_from = core.history_from_ms(state)
    assert kept_from == BASE + 3 * day  # the latest dropped step: "lunching" from day 3 on
    records = core.windows_between(state, chunks, day, BASE - 2 * day, BASE + 11 * day)
    starts = [r.window_start_ms for r in records]
    assert starts == [BASE + d * day for d in range(3, 11)]  # nothing before the kept history, nor invented
    *closed, still_open = records
    for record in closed:  # what the query answers for a closed window is what was published
        assert record.final and record.totals.ms_by_status == published[record.window_start_ms]
    assert not still_open.final and still_open.window_start_ms == BASE + 10 * day
    assert closed[0].totals.ms_by_status == {"lunching": day}


def test_a_date_a_time_zone_ahead_is_implausible_a_few_minutes_ahead_is_not() -> None:
    from processors.event_time import implausible_date

    now = BASE + 5 * 86_400_000
    assert implausible_date(now + 60 * M, now) == "date_in_future"  # a time zone applied twice: an hour ahead
    assert implausible_date(now + 15 * M + 1, now) == "date_in_future"
    assert implausible_date(now + 15 * M, now) is None  # clocks that disagree by minutes
    assert implausible_date(now - 400 * 86_400_000, now) is None  # history, however old
