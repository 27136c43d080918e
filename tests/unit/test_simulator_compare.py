"""Comparing published records with the expected results: what a consumer of the compacted topics would see."""

from __future__ import annotations

import copy

from onduty.simulator import SimulationConfig, expected_results, generate
from onduty.simulator.agents import HOUR_MS
from onduty.simulator.compare import compare
from schemas import topics as t


def _published(expected: dict) -> dict[str, list]:
    """The records a correct pipeline would leave on the derived topics for these expected results."""
    rosters = [(f"{center}:{agent}", {"call_center_id": center, "agent_id": agent, "on_duty_status": status})
               for center, agents in expected["rosters"].items() for agent, status in agents.items()]
    states = [(agent, {"agent_id": agent, "current": {"on_duty_status": s["on_duty_status"], "since_ms": s["since_ms"]}})
              for agent, s in expected["agent_states"].items()]

    def windows(section: str, owner_field: str) -> list:
        out = []
        for owner, by_size in expected[section].items():
            for label, by_start in by_size.items():
                size = expected["window_sizes"][label]
                for start, totals in by_start.items():
                    out.append((f"{owner}:{label}:{start}", {owner_field: owner, "window_size": label,
                                "window_size_ms": size, "window_start_ms": int(start), "revision": 1,
                                "final": True, "totals": totals}))
        return out

    return {t.CALLCENTER_AGENTS: rosters, t.AGENT_STATE: states,
            t.AGENT_TIME_IN_STATUS: windows("agents", "agent_id"),
            t.CALLCENTER_TIME_IN_STATUS: windows("call_centers", "call_center_id")}


def _expected() -> dict:
    config = SimulationConfig(agents=8, call_centers=3, seed=4, duration_ms=2 * HOUR_MS, close_windows=True)
    return expected_results(generate(config).payloads, [15 * 60_000, HOUR_MS])


def test_a_correct_pipeline_matches():
    expected = _expected()
    result = compare(expected, _published(expected))
    assert result.ok, result.summary()
    assert result.checked["rosters"] == len(expected["rosters"])
    assert result.checked["agents windows"] > 8


def test_tombstones_remove_roster_entries_and_later_records_win():
    expected = _expected()
    topics = _published(expected)
    center, agents = next(iter(expected["rosters"].items()))
    agent = next(iter(agents))
    # an agent that left, published after its upsert, then came back: the last record per key wins
    topics[t.CALLCENTER_AGENTS] += [(f"{center}:{agent}", None)]
    assert not compare(expected, topics).ok
    topics[t.CALLCENTER_AGENTS] += [(f"{center}:{agent}", {"call_center_id": center, "agent_id": agent,
                                                           "on_duty_status": agents[agent]})]
    assert compare(expected, topics).ok


def test_the_last_window_record_wins_even_with_a_lower_revision():
    # after a worker crash the correct re-emission can carry a lower revision than a record sent just before the
    # crash: a consumer keeps the last record per key in partition order (docs/topics.md), and so does --verify
    expected = _expected()
    topics = _published(expected)
    key, correct = topics[t.AGENT_TIME_IN_STATUS][0]
    before_crash = copy.deepcopy(correct)
    before_crash["revision"] = 5
    before_crash["totals"] = {"ms_by_status": {"busy": 1}}
    reemitted = {**correct, "revision": 2}
    topics[t.AGENT_TIME_IN_STATUS] += [(key, before_crash), (key, reemitted)]
    assert compare(expected, topics).ok
    # and the other way round: a wrong record last is a mismatch, whatever the revisions
    topics[t.AGENT_TIME_IN_STATUS] += [(key, {**before_crash, "revision": 1})]
    result = compare(expected, topics)
    assert result.mismatches == {"agents windows": 1}, result.summary()


def test_wrong_totals_missing_windows_and_wrong_states_are_reported():
    expected = _expected()
    topics = _published(expected)
    key, value = topics[t.CALLCENTER_TIME_IN_STATUS][0]
    wrong = copy.deepcopy(value)
    wrong["revision"] = 2
    status = next(iter(wrong["totals"]["ms_by_status"]))
    wrong["totals"]["ms_by_status"][status] += 1
    topics[t.CALLCENTER_TIME_IN_STATUS].append((key, wrong))
    del topics[t.AGENT_TIME_IN_STATUS][0]
    agent, state = topics[t.AGENT_STATE][0]
    topics[t.AGENT_STATE].append((agent, {"agent_id": agent, "current": {**state["current"], "since_ms": 1}}))
    result = compare(expected, topics)
    assert result.mismatches == {"call_centers windows": 1, "agents windows": 1, "agent states": 1}
    assert any("never published" in p for p in result.problems)


def test_zero_windows_and_open_windows_are_not_differences():
    expected = _expected()
    topics = _published(expected)
    size = expected["window_sizes"]["15m"]
    topics[t.CALLCENTER_TIME_IN_STATUS].append(("nobody:15m:0", {
        "call_center_id": "nobody", "window_size_ms": size, "window_start_ms": 0, "revision": 1, "final": True,
        "totals": {"ms_by_status": {}, "entries_by_status": {"available": 0}}}))
    open_start = expected["complete_until_ms"] - expected["complete_until_ms"] % size
    topics[t.AGENT_TIME_IN_STATUS].append(("x:15m:open", {
        "agent_id": "x", "window_size_ms": size, "window_start_ms": open_start, "revision": 1, "final": True,
        "totals": {"ms_by_status": {"busy": 5}}}))
    assert compare(expected, topics).ok
