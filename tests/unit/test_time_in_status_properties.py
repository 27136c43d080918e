"""Property tests of the time-in-status core against an independent ground truth.

Tiny windows (10 ms and 40 ms) and day chunks of 50 ms let a few dozen events exercise everything: chunk
boundaries, windows closing, late corrections, horizon rejections, and a millisecond-by-millisecond check.
"""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.time_in_status import TimeInStatusConfig
from schemas import dedup_identity
from tests.unit.test_time_in_status import BASE, Partition, event, ground_truth

SIZES = (10, 40)
TINY = TimeInStatusConfig(sizes_ms=SIZES, grace_ms=3, late_horizon_ms=10_000, chunk_ms=50)
SPAN = 300

statuses = st.sampled_from(["available", "unavailable", "busy", "occupied", "lunching"])
events = st.lists(
    st.builds(
        lambda agent, offset, status, ccs, reason, availability, ts: event(
            agent, BASE + offset, status, ccs=ccs, reason=reason, availability=availability, ts=ts),
        st.sampled_from(["a1", "a2", "a3"]),
        st.integers(0, SPAN),
        statuses,
        st.lists(st.sampled_from(["c1", "c2", "c3"]), max_size=3, unique=True),
        st.sampled_from([None, "", "break", "lunch"]),
        st.sampled_from([None, "available", "unavailable"]),
        st.sampled_from([None, 1, 2]),
    ),
    min_size=1,
    max_size=40,
)


def final(partition: Partition, until: int) -> tuple[dict, dict]:
    partition.finish(until)
    return partition.agent_totals(), partition.cc_totals()


def fed(items, config=TINY, restart_at: int | None = None, replay_from: int | None = None) -> Partition:
    partition = Partition(config)
    if restart_at is None:
        partition.feed(items)
        return partition
    partition.feed(items[:restart_at])
    partition.restart()
    # a restarted worker replays from its last committed offset: events it had applied come again
    start = restart_at if replay_from is None else min(replay_from, restart_at)
    partition.feed(items[start:])
    return partition


UNTIL = BASE + SPAN + 100


@settings(max_examples=200, deadline=None)
@given(items=events)
def test_totals_equal_the_ground_truth_whatever_the_arrival_order(items) -> None:
    # any permutation: within and far beyond the grace (the horizon is large here)
    assert final(fed(items), UNTIL) == ground_truth(items, SIZES, UNTIL)


@settings(max_examples=100, deadline=None)
@given(items=events, seed=st.integers(0, 2**32))
def test_shuffling_and_duplicating_change_nothing(items, seed) -> None:
    rng = random.Random(seed)
    shuffled = items + rng.sample(items, k=len(items) // 2)  # at-least-once: duplicates
    rng.shuffle(shuffled)
    nearly_sorted = sorted(items, key=lambda e: e.date + rng.randint(0, TINY.grace_ms))  # within the grace
    expected = ground_truth(items, SIZES, UNTIL)
    assert final(fed(shuffled), UNTIL) == expected
    assert final(fed(nearly_sorted), UNTIL) == expected


@settings(max_examples=100, deadline=None)
@given(items=events, data=st.data())
def test_a_restart_with_replay_gives_the_same_totals(items, data) -> None:
    cut = data.draw(st.integers(0, len(items)))
    replay_from = data.draw(st.integers(0, cut))
    assert final(fed(items, restart_at=cut, replay_from=replay_from), UNTIL) == ground_truth(items, SIZES, UNTIL)


@settings(max_examples=60, deadline=None)
@given(items=events)
def test_millisecond_by_millisecond(items) -> None:
    agents, _ = final(fed(items), UNTIL)
    steps = defaultdict(dict)
    for item in items:
        steps[item.agent_id][dedup_identity(item)] = item
    for agent_id, unique in steps.items():
        ordered = sorted(unique.items(), key=lambda kv: (kv[1].date, kv[1].event_timestamp or 0, kv[0]))
        timeline = [item for _, item in ordered]
        for size in SIZES:
            counted: dict = defaultdict(lambda: defaultdict(int))
            index = -1
            for ms in range(timeline[0].date, UNTIL - UNTIL % size):
                while index + 1 < len(timeline) and timeline[index + 1].date <= ms:
                    index += 1
                counted[ms - ms % size][timeline[index].on_duty_status] += 1
            for start, by_status in counted.items():
                assert agents[(agent_id, size, start)]["ms_by_status"] == dict(by_status)


@settings(max_examples=100, deadline=None)
@given(items=events)
def test_an_agent_on_duty_throughout_fills_each_window_exactly(items) -> None:
    opening = event("a9", BASE - 1, "available", ccs=["c9"])
    agent_events = [opening] + [event("a9", e.date, e.on_duty_status, ccs=["c9", *e.call_center_ids],
                                      availability=e.availability_status) for e in items]
    agents, ccs = final(fed(agent_events), UNTIL)
    for (agent_id, size, start), totals in agents.items():
        if start >= BASE and start + size <= UNTIL - UNTIL % size:
            assert sum(totals["ms_by_status"].values()) == size
            assert sum(totals["ms_by_availability"].values()) == size
            assert sum(ccs[("c9", size, start)]["ms_by_status"].values()) == size


@settings(max_examples=100, deadline=None)
@given(items=events)
def test_with_a_short_horizon_the_totals_are_those_of_the_accepted_events(items) -> None:
    short = TimeInStatusConfig(sizes_ms=SIZES, grace_ms=3, late_horizon_ms=30, chunk_ms=50)
    partition = fed(items, config=short)
    rejected = {id(r.event) for r in partition.late}
    accepted = [e for e in items if id(e) not in rejected]
    assert all(r.reason == "beyond_late_horizon" for r in partition.late)
    if accepted:
        assert final(partition, UNTIL) == ground_truth(accepted, SIZES, UNTIL)


@settings(max_examples=150, deadline=None)
@given(items=events, seed=st.integers(0, 2**32), data=st.data())
def test_status_intervals_folded_by_start_tile_the_timeline(items, seed, data) -> None:
    # docs/semantics.md: keep the last interval record per (agent, start_ms), in publication order
    rng = random.Random(seed)
    delivered = items + rng.sample(items, k=len(items) // 3)
    rng.shuffle(delivered)
    cut = data.draw(st.integers(0, len(delivered)))
    partition = fed(delivered, restart_at=cut, replay_from=data.draw(st.integers(0, cut)))
    folded = {(r.agent_id, r.start_ms): r for r in partition.intervals}
    steps = defaultdict(dict)
    for item in items:
        steps[item.agent_id][dedup_identity(item)] = item
    expected = {}
    for agent_id, unique in steps.items():
        timeline = [e for _, e in sorted(unique.items(), key=lambda kv: (kv[1].date, kv[1].event_timestamp or 0, kv[0]))]
        for step, following in zip(timeline, timeline[1:]):
            if following.date > step.date:
                expected[(agent_id, step.date)] = (
                    step.on_duty_status, following.date, following.date - step.date,
                    sorted(set(map(str, step.call_center_ids))), step.on_duty_status_reason or "",
                    step.availability_status or "unknown")
    assert {key: (r.on_duty_status, r.end_ms, r.duration_ms, r.call_center_ids, r.on_duty_status_reason,
                  r.availability_status) for key, r in folded.items()} == expected
