"""The simulator's expected results on small hand-computed streams (docs/semantics.md, literally)."""

from __future__ import annotations

import random

import pytest

from onduty.simulator.expected import agent_timelines, current_states, expected_results, rosters, window_totals
from tests.samples import payload

MIN = 60_000
Q = 15 * MIN  # a 15-minute window
W = 1_740_960_000_000  # aligned to every window size used here (a UTC midnight)


def event(agent: str, date: int, status: str, centers=("cc1",), reason: str | None = "", **extra):
    fields = {"target": {"id": agent}, "date": date, "on_duty_status": status, "call_center_ids": list(centers),
              "event_timestamp": date + 500,
              "availability_status": "available" if status == "available" else "unavailable", **extra}
    result = payload(**fields)
    if reason is None:
        del result["on_duty_status_reason"]
    else:
        result["on_duty_status_reason"] = reason
    return result


def totals(stream, complete_until, sizes=(Q,)):
    return window_totals(agent_timelines(stream), sizes, complete_until)


def test_intervals_are_cut_at_window_boundaries_and_the_open_state_runs_to_the_window_end():
    stream = [event("a", W, "available"), event("a", W + 5 * MIN, "occupied"), event("a", W + 20 * MIN, "wrapup")]
    agents, _ = totals(stream, complete_until=W + 2 * Q)
    assert agents["a"][Q] == {
        W: {"ms_by_status": {"available": 5 * MIN, "occupied": 10 * MIN}, "ms_by_unavailable_reason": {},
            "ms_by_availability": {"available": 5 * MIN, "unavailable": 10 * MIN},
            "entries_by_status": {"available": 1, "occupied": 1}},
        W + Q: {"ms_by_status": {"occupied": 5 * MIN, "wrapup": 10 * MIN}, "ms_by_unavailable_reason": {},
                "ms_by_availability": {"unavailable": 15 * MIN}, "entries_by_status": {"wrapup": 1}},
    }


def test_only_complete_windows_are_listed():
    stream = [event("a", W, "available"), event("a", W + 20 * MIN, "occupied")]
    agents, _ = totals(stream, complete_until=W + 2 * Q - 1)  # the second window ends 1 ms too late
    assert list(agents["a"][Q]) == [W]
    # the entry into occupied belongs to the incomplete window: not counted yet
    assert agents["a"][Q][W]["entries_by_status"] == {"available": 1}


def test_time_before_the_first_event_counts_nothing():
    agents, _ = totals([event("a", W + 10 * MIN, "available")], complete_until=W + Q)
    assert agents["a"][Q][W]["ms_by_status"] == {"available": 5 * MIN}


def test_an_agent_on_duty_throughout_fills_every_window_exactly():
    rng = random.Random(1)
    stream, t = [], W
    while t < W + 3 * 3_600_000:
        stream.append(event("a", t, rng.choice(["available", "occupied", "wrapup", "unavailable", "busy"]),
                            reason=rng.choice(["lunch", "", None])))
        t += rng.randint(1, 20 * MIN)
    agents, centers = totals(stream, complete_until=W + 3 * 3_600_000, sizes=(Q, 3_600_000))
    for size in (Q, 3_600_000):
        assert len(agents["a"][size]) == 3 * 3_600_000 // size
        for figures in (agents["a"][size], centers["cc1"][size]):
            for window in figures.values():
                assert sum(window["ms_by_status"].values()) == size
                assert sum(window["ms_by_availability"].values()) == size


def test_reason_and_availability_keys_for_missing_values():
    plain = event("a", W, "unavailable", reason=None)
    del plain["availability_status"]
    stream = [plain, event("a", W + 5 * MIN, "unavailable", reason="lunch"),
              event("a", W + 10 * MIN, "unavailable", reason="")]
    window = totals(stream, complete_until=W + Q)[0]["a"][Q][W]
    assert window["ms_by_unavailable_reason"] == {"": 10 * MIN, "lunch": 5 * MIN}
    assert window["ms_by_availability"] == {"unknown": 5 * MIN, "unavailable": 10 * MIN}
    # the reason changed, the status did not: a single entry
    assert window["entries_by_status"] == {"unavailable": 1}


def test_call_centers_count_agent_time_while_on_duty_for_them():
    stream = [
        event("a", W, "available", centers=("cc1", "cc2")),
        event("a", W + 6 * MIN, "available", centers=("cc2",)),  # leaves cc1, same status
        event("a", W + 9 * MIN, "available", centers=("cc1", "cc2")),  # joins cc1 again
        event("b", W + 3 * MIN, "occupied", centers=("cc1",)),
    ]
    agents, centers = totals(stream, complete_until=W + Q)
    assert centers["cc1"][Q][W]["ms_by_status"] == {"available": 6 * MIN + 6 * MIN, "occupied": 12 * MIN}
    assert centers["cc2"][Q][W]["ms_by_status"] == {"available": 15 * MIN}
    # cc1 counts an entry when the agent re-joins it; cc2 only the first
    assert centers["cc1"][Q][W]["entries_by_status"] == {"available": 2, "occupied": 1}
    assert centers["cc2"][Q][W]["entries_by_status"] == {"available": 1}
    assert agents["a"][Q][W]["entries_by_status"] == {"available": 1}
    # an agent on duty for two call centers counts fully in each
    assert sum(centers["cc1"][Q][W]["ms_by_status"].values()) + sum(centers["cc2"][Q][W]["ms_by_status"].values()) \
        == 2 * 15 * MIN - 3 * MIN + 12 * MIN


def test_logged_off_agents_count_for_themselves_but_for_no_call_center():
    stream = [event("a", W, "available"), event("a", W + 5 * MIN, "unavailable", centers=())]
    agents, centers = totals(stream, complete_until=W + 2 * Q)
    assert agents["a"][Q][W + Q]["ms_by_status"] == {"unavailable": Q}
    assert W + Q not in centers["cc1"][Q]


def test_arrival_order_and_duplicates_change_nothing():
    stream = [event("a", W + i * 7 * MIN, s) for i, s in enumerate(["available", "occupied", "wrapup"] * 4)]
    stream += [event("b", W + i * 11 * MIN + 1, s, centers=("cc2",))
               for i, s in enumerate(["busy", "available", "unavailable"] * 3)]
    reference = expected_results(stream, [Q, 3_600_000], partitions=None)
    shuffled = stream + stream[::3]
    random.Random(4).shuffle(shuffled)
    assert expected_results(shuffled, [Q, 3_600_000], partitions=None) == reference


def test_same_date_is_ordered_by_event_timestamp():
    first = event("a", W, "available")
    second = event("a", W, "occupied", event_timestamp=W + 900)
    later = event("a", W + 5 * MIN, "wrapup")
    agents, _ = totals([later, second, first], complete_until=W + Q)
    # the zero-length 'available' counts nothing but is still an entry
    assert agents["a"][Q][W]["ms_by_status"] == {"occupied": 5 * MIN, "wrapup": 10 * MIN}
    assert agents["a"][Q][W]["entries_by_status"] == {"available": 1, "occupied": 1, "wrapup": 1}
    assert current_states(agent_timelines([later, second, first]))["a"]["on_duty_status"] == "wrapup"


def test_current_state_keeps_since_when_only_call_centers_or_reason_change():
    stream = [event("a", W, "available", centers=("cc1",)),
              event("a", W + MIN, "unavailable", reason="lunch"),
              event("a", W + 2 * MIN, "unavailable", centers=("cc1", "cc2"), reason="meeting"),
              event("b", W, "occupied", centers=("cc2",)),
              event("c", W, "available", centers=("cc1",)), event("c", W + MIN, "unavailable", centers=())]
    states = current_states(agent_timelines(stream))
    assert states["a"]["since_ms"] == W + MIN
    assert states["a"]["updated_ms"] == W + 2 * MIN
    assert states["a"]["on_duty_status_reason"] == "meeting"
    assert rosters(states) == {"cc1": {"a": "unavailable"}, "cc2": {"a": "unavailable", "b": "occupied"}}


def test_an_older_event_does_not_roll_the_current_state_back():
    stream = [event("a", W + MIN, "occupied"), event("a", W, "available")]  # the older one arrives last
    assert current_states(agent_timelines(stream))["a"]["on_duty_status"] == "occupied"


@pytest.mark.parametrize("grace", [0, 5 * MIN])
def test_complete_until_is_the_last_date_minus_the_grace(grace):
    stream = [event("a", W, "available"), event("b", W + Q + 7 * MIN, "available")]
    result = expected_results(stream, [Q], grace, partitions=None)
    assert result["complete_until_ms"] == W + Q + 7 * MIN - grace
    assert list(result["agents"]["a"]["15m"]) == [str(W)]
    assert result["agents"]["a"]["15m"][str(W)]["ms_by_status"] == {"available": Q}


def test_complete_until_is_the_lowest_partition_watermark():
    from onduty.simulator.partitions import partition_for

    a, b = "5728255400000000", "5728255400007919"
    assert partition_for(a, 8) != partition_for(b, 8)
    stream = [event(a, W, "available"), event(b, W + 3 * Q, "available")]
    assert expected_results(stream, [Q], 0, partitions=8)["complete_until_ms"] == W  # a's partition is behind
    assert expected_results(stream, [Q], 0, partitions=1)["complete_until_ms"] == W + 3 * Q


def test_partitions_match_kafkas_default_partitioner():
    from aiokafka.partitioner import DefaultPartitioner

    from onduty.simulator.partitions import partition_for

    partitioner = DefaultPartitioner()
    rng = random.Random(3)
    for _ in range(2000):
        key = str(rng.randrange(10 ** rng.randint(1, 19)))
        for count in (1, 3, 8, 12):
            assert partition_for(key, count) == partitioner(key.encode(), list(range(count)), list(range(count)))
