"""The roster's pure rules: agent stage (state + event -> state + records) and call-center stage."""

from __future__ import annotations

import random

import pytest

from processors.agent_state import AgentState, Outcome, apply_event
from processors.callcenter_roster import ChangeOutcome, Membership, apply_change, empty_summary, update_summary
from schemas import dedup_identity
from tests.roster_helpers import T0, event

NOW = T0 + 3_600_000  # the wall clock the rules see


def run_agent(events, offsets=True):
    """Apply events in order; return the final state and every step."""
    state, steps = None, []
    for offset, ev in enumerate(events):
        step = apply_event(state, ev, dedup_identity(ev), offset if offsets else None, NOW)
        state = step.state
        steps.append(step)
    return state, steps


def apply_all(changes, memberships=None) -> dict[tuple[str, str], Membership]:
    """Apply changes with the call-center rules; memberships by (call center, agent)."""
    memberships = {} if memberships is None else memberships
    for change in changes:
        key = (change.call_center_id, change.agent_id)
        memberships[key] = apply_change(memberships.get(key), change).membership
    return memberships


def rosters_from(steps) -> dict[tuple[str, str], Membership]:
    return apply_all(change for step in steps for change in step.changes)


def members(memberships) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for (cc, agent), membership in memberships.items():
        result.setdefault(cc, {})
        if membership.entry is not None:
            result[cc][agent] = membership.entry.on_duty_status
    return result


@pytest.mark.parametrize(
    "name, events, expected",
    [
        ("join", [event(1, ["A"])], {"A": {"1": "available"}}),
        ("join two call centers", [event(1, ["A", "B"])], {"A": {"1": "available"}, "B": {"1": "available"}}),
        ("leave one of two", [event(1, ["A", "B"]), event(1, ["B"], at_s=10)], {"A": {}, "B": {"1": "available"}}),
        ("switch call centers", [event(1, ["A"]), event(1, ["B"], at_s=10)], {"A": {}, "B": {"1": "available"}}),
        ("status change", [event(1, ["A"]), event(1, ["A"], "busy", at_s=5)], {"A": {"1": "busy"}}),
        ("empty list leaves all", [event(1, ["A", "B"]), event(1, [], "unavailable", at_s=5)], {"A": {}, "B": {}}),
        ("unknown status carried", [event(1, ["A"], "in-a-meeting")], {"A": {"1": "in-a-meeting"}}),
        ("rejoin after leave", [event(1, ["A"]), event(1, [], at_s=1), event(1, ["A"], "busy", at_s=2)],
         {"A": {"1": "busy"}}),
        ("two agents", [event(1, ["A"]), event(2, ["A"], "wrapup", at_s=1)], {"A": {"1": "available", "2": "wrapup"}}),
        ("agent in many call centers", [event(1, [f"C{i}" for i in range(20)], "busy")],
         {f"C{i}": {"1": "busy"} for i in range(20)}),
    ],
)
def test_rosters(name, events, expected):
    by_agent: dict[str, list] = {}
    for ev in events:
        by_agent.setdefault(ev.agent_id, []).append(ev)
    steps = [step for evs in by_agent.values() for step in run_agent(evs)[1]]
    assert members(rosters_from(steps)) == expected


def test_since_ms_kept_while_status_unchanged():
    state, _ = run_agent([event(1, ["A"], "available"), event(1, ["A", "B"], "available", at_s=30),
                          event(1, ["B"], "busy", at_s=60)])
    assert state.current.since_ms == T0 + 60_000
    assert state.previous.since_ms == T0
    state, _ = run_agent([event(1, ["A"], "available"), event(1, ["A", "B"], "available", at_s=30)])
    assert state.current.since_ms == T0


def test_duplicate_changes_nothing_and_emits_nothing():
    first = event(1, ["A"], "busy")
    state, steps = run_agent([first, event(1, ["A"], "available", at_s=5), first])
    assert steps[-1].outcome is Outcome.DUPLICATE
    assert steps[-1].agent_record is None and steps[-1].changes == []
    assert state.current.on_duty_status == "available" and state.version == 2


def test_out_of_order_event_is_late_and_does_not_roll_back():
    state, steps = run_agent([event(1, ["A"], "busy", at_s=10), event(1, ["B"], "available", at_s=5)])
    assert steps[-1].outcome is Outcome.LATE
    assert steps[-1].changes == []
    assert state.current.on_duty_status == "busy" and state.current.call_center_ids == ["A"]
    assert state.late_events == 1
    assert steps[-1].agent_record.late_events == 1



@pytest.mark.parametrize("name, arrival, since_s, previous", [
    ("an older event of the same status starts the run earlier", [(200, "available"), (100, "available")], 100,
     ("available", 100, 100)),
    ("a late status change in between restarts the run", [(100, "available"), (200, "available"), (150, "busy")],
     200, ("busy", 150, 150)),
    ("a late event between previous and current becomes previous", [(100, "available"), (300, "wrapup"),
                                                                     (200, "busy")], 300, ("busy", 200, 200)),
    ("a late event before previous extends previous's run", [(100, "busy"), (200, "available"), (300, "wrapup"),
                                                              (50, "available"), (150, "available")],
     300, ("available", 200, 150)),
])
def test_since_ms_and_previous_follow_event_time_whatever_the_arrival(name, arrival, since_s, previous):
    events = [event(1, ["A"], status, at_s=at_s) for at_s, status in arrival]
    state, steps = run_agent(events)
    assert state.current.since_ms == T0 + since_s * 1000
    if previous is None:
        assert state.previous is None
    else:
        status, date_s, previous_since_s = previous
        assert (state.previous.on_duty_status, state.previous.date_ms, state.previous.since_ms) == (
            status, T0 + date_s * 1000, T0 + previous_since_s * 1000)
    in_order, _ = run_agent(sorted(events, key=lambda e: e.date))
    assert (state.current, state.previous) == (in_order.current, in_order.previous)


def test_a_late_event_that_moves_since_ms_sends_the_roster_entries_again():
    state, steps = run_agent([event(1, ["A", "B"], "available", at_s=200), event(1, ["A", "B"], "available", at_s=100)])
    late = steps[-1]
    assert late.outcome is Outcome.LATE and late.corrected and state.version == 2
    assert {(c.call_center_id, c.entry.since_ms) for c in late.changes} == {("A", T0 + 100_000), ("B", T0 + 100_000)}
    assert late.agent_record.current.since_ms == T0 + 100_000 and late.agent_record.late_events == 1


def test_since_ms_is_independent_of_arrival_order_within_the_kept_timeline():
    rng = random.Random(7)
    for _ in range(300):
        statuses = [rng.choice(["available", "busy", "wrapup"]) for _ in range(12)]
        events = [event(1, ["A"], status, at_s=10 * i + rng.choice([0, 0, 5])) for i, status in enumerate(statuses)]
        arrival = list(events)
        for i in range(len(arrival) - 1):  # reordered within a few events, with some duplicates
            j = min(len(arrival) - 1, i + rng.randrange(3))
            arrival[i], arrival[j] = arrival[j], arrival[i]
        arrival += rng.sample(events, 3)
        state, _ = run_agent(arrival, offsets=False)
        expected, _ = run_agent(sorted(events, key=lambda e: (e.date, e.event_timestamp, dedup_identity(e))))
        assert (state.current, state.previous) == (expected.current, expected.previous), arrival


def test_a_duplicate_of_the_current_event_is_recognised_after_many_older_events():
    current = event(1, ["A"], "busy", at_s=100)
    older = [event(1, ["A"], "available", at_s=i) for i in range(20)]
    state, steps = run_agent([current, *older, current], offsets=False)
    assert steps[-1].outcome is Outcome.DUPLICATE and steps[-1].changes == []
    assert state.current.on_duty_status == "busy" and state.previous is not None

def test_equal_dates_are_ordered_by_event_timestamp_whatever_the_arrival():
    older = event(1, ["A"], "busy", event_timestamp=T0 + 1)
    newer = event(1, ["A"], "available", event_timestamp=T0 + 2)
    for order in ([older, newer], [newer, older]):
        state, _ = run_agent(order)
        assert state.current.on_duty_status == "available"


def test_replayed_offset_reemits_full_current_state_without_changing_it():
    events = [event(1, ["A", "B"]), event(1, ["B"], "busy", at_s=5)]
    state, _ = run_agent(events)
    step = apply_event(state, events[0], dedup_identity(events[0]), 0, NOW)
    assert step.outcome is Outcome.REPLAY
    assert step.state == state
    assert step.agent_record.current.on_duty_status == "busy"
    views = {c.call_center_id: c.entry for c in step.changes}
    assert views["A"] is None and views["B"].on_duty_status == "busy"


def test_state_survives_encoding_roundtrip():
    import msgspec

    state, _ = run_agent([event(1, ["A"]), event(1, ["A"], "busy", at_s=1)])
    encoded = msgspec.json.encode(state)
    assert msgspec.json.decode(encoded, type=AgentState) == state


def test_callcenter_stage_ignores_stale_and_repeats_same_version():
    _, steps = run_agent([event(1, ["A"]), event(1, [], at_s=1), event(1, ["A"], "busy", at_s=2)])
    join1, leave2, join3 = (step.changes[0] for step in steps)
    membership = apply_change(apply_change(None, join1).membership, join3).membership
    stale = apply_change(membership, leave2)
    assert stale.outcome is ChangeOutcome.STALE and stale.membership == membership
    repeat = apply_change(membership, join3)
    assert repeat.outcome is ChangeOutcome.REPEATED and repeat.membership.entry.on_duty_status == "busy"
    # a stale join after a leave does not resurrect the agent
    left = apply_change(apply_change(None, join1).membership, leave2).membership
    assert left.entry is None
    assert apply_change(left, join1).outcome is ChangeOutcome.STALE


def test_callcenter_changes_in_any_redelivery_order_converge():
    evs = [event(1, ["A"]), event(1, ["A", "B"], "busy", at_s=1), event(1, ["B"], at_s=2),
           event(2, ["A"], "wrapup", at_s=3), event(1, ["A"], "occupied", at_s=4)]
    by_agent: dict[str, list] = {}
    for ev in evs:
        by_agent.setdefault(ev.agent_id, []).append(ev)
    changes = [c for evs_ in by_agent.values() for step in run_agent(evs_)[1] for c in step.changes]
    expected = members(apply_all(changes))
    assert expected == {"A": {"1": "occupied", "2": "wrapup"}, "B": {}}
    rng = random.Random(7)
    for _ in range(50):
        redelivered = changes + rng.sample(changes, k=len(changes) // 2)  # at-least-once duplicates
        rng.shuffle(redelivered)  # and any order at all: versions decide
        assert members(apply_all(redelivered)) == expected


def test_summary_counts_follow_entries_by_difference():
    evs = [event(1, ["A"], "busy"), event(2, ["A"], "busy", at_s=1, availability_status="available"),
           event(3, ["A"], "wrapup", at_s=2, availability_status=None)]
    summary = empty_summary("A")
    entries = {}
    for ev in evs:
        change = run_agent([ev])[1][0].changes[0]
        summary = update_summary(summary, entries.get(ev.agent_id), change.entry, change.date_ms)
        entries[ev.agent_id] = change.entry
    assert summary.on_duty_agents == 3
    assert summary.agents_by_status == {"busy": 2, "wrapup": 1}
    assert summary.agents_by_availability == {"available": 1, "unavailable": 1, "unknown": 1}
    assert summary.as_of_ms == T0 + 2000
    # agent 1 leaves: its counts go, zero counts disappear
    summary = update_summary(summary, entries["1"], None, T0 + 3000)
    summary = update_summary(summary, entries["3"], None, T0 + 4000)
    assert summary.on_duty_agents == 1
    assert summary.agents_by_status == {"busy": 1}
    assert summary.agents_by_availability == {"available": 1}


@pytest.mark.parametrize(
    "date_ms, why",
    [
        (16203288633333, "the spec's one-digit-too-many timestamp: far in the future"),
        (1_700_000_123, "seconds instead of milliseconds"),
    ],
)
def test_implausible_date_never_becomes_current_state(date_ms, why):
    good = event(1, ["A"], "available")
    state, _ = run_agent([good])
    bad = event(1, ["B"], "busy", date=date_ms)
    step = apply_event(state, bad, dedup_identity(bad), 1, NOW)
    assert step.outcome is Outcome.IMPLAUSIBLE, why
    assert step.changes == [] and step.agent_record is None
    assert step.state.current == state.current and step.state.implausible_events == 1
    later = event(1, ["A"], "wrapup", at_s=60)
    assert apply_event(step.state, later, dedup_identity(later), 2, NOW).state.current.on_duty_status == "wrapup"
