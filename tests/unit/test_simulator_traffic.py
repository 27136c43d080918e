"""The traffic simulator: seeded, realistic, with exact shares of duplicates and out-of-order deliveries."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from onduty.cli import main
from onduty.simulator import SimulationConfig, expected_results, generate
from onduty.simulator.agents import HOUR_MS
from onduty.simulator.files import expected_path, read_deliveries, write_deliveries
from schemas import decode_agent_status_payload, dedup_identity

SMALL = SimulationConfig(agents=30, call_centers=4, seed=7, duration_ms=4 * HOUR_MS,
                         duplicate_share=0.05, out_of_order_share=0.03)


def test_same_seed_same_deliveries_other_seed_other_deliveries():
    first, again = generate(SMALL), generate(SMALL)
    assert [(d.send_ms, d.payload) for d in first.deliveries] == [(d.send_ms, d.payload) for d in again.deliveries]
    other = generate(SimulationConfig(**{**SMALL.__dict__, "seed": 8}))
    assert [d.payload for d in other.deliveries] != [d.payload for d in first.deliveries]


def test_adding_agents_does_not_change_the_existing_agents_events():
    fewer = generate(SimulationConfig(agents=5, seed=3, duplicate_share=0, out_of_order_share=0))
    more = generate(SimulationConfig(agents=6, seed=3, duplicate_share=0, out_of_order_share=0))
    ids = {e.agent_id for e in fewer.events}
    assert [e.payload for e in more.events if e.agent_id in ids] == [e.payload for e in fewer.events]


def test_duplicate_share_is_exact_and_duplicates_are_retries_within_1_5_s():
    simulation = generate(SMALL)
    duplicates = [d for d in simulation.deliveries if d.kind == "duplicate"]
    assert len(duplicates) == round(0.05 * len(simulation.events))
    assert len(simulation.deliveries) == len(simulation.events) + len(duplicates)
    first_send = {dedup_identity(decode_agent_status_payload(d.payload)): d.send_ms
                  for d in simulation.deliveries if d.kind != "duplicate"}
    for duplicate in duplicates:
        delay = duplicate.send_ms - first_send[dedup_identity(decode_agent_status_payload(duplicate.payload))]
        assert 100 <= delay <= 1500  # one of Dialpad's retries


def _out_of_order_events(deliveries) -> int:
    """Events whose first delivery came after the delivery of a later event (by date) of the same agent."""
    latest_date_delivered: dict[str, int] = defaultdict(lambda: -1)
    late = 0
    seen: set[str] = set()
    for delivery in deliveries:
        event = decode_agent_status_payload(delivery.payload)
        identity = dedup_identity(event)
        if identity in seen:
            continue
        seen.add(identity)
        if event.date < latest_date_delivered[event.agent_id]:
            late += 1
        latest_date_delivered[event.agent_id] = max(latest_date_delivered[event.agent_id], event.date)
    return late


@pytest.mark.parametrize("share", [0.0, 0.01, 0.1])
def test_out_of_order_share_is_exact(share):
    simulation = generate(SimulationConfig(agents=20, seed=2, duration_ms=4 * HOUR_MS,
                                           duplicate_share=0, out_of_order_share=share))
    assert _out_of_order_events(simulation.deliveries) == round(share * len(simulation.events))


def test_deliveries_are_in_sending_order():
    sends = [d.send_ms for d in generate(SMALL).deliveries]
    assert sends == sorted(sends)


def test_payloads_show_every_known_variant_and_all_decode():
    simulation = generate(SimulationConfig(agents=200, call_centers=5, seed=1, duration_ms=8 * HOUR_MS))
    payloads = [e.payload for e in simulation.events]
    for payload in payloads:
        decode_agent_status_payload(payload)
    assert {type(p["target"]["id"]) for p in payloads} == {int, str}
    assert any("phone" in p["target"] for p in payloads) and any("phone_number" in p["target"] for p in payloads)
    assert any(p["powerdialer_session"] is None for p in payloads)
    assert any(p["powerdialer_session"] for p in payloads)
    assert any("availability_status" not in p for p in payloads)
    assert {p["on_duty_status"] for p in payloads} == {"available", "unavailable", "occupied", "wrapup", "busy"}
    reasons = Counter(p.get("on_duty_status_reason") for p in payloads if p["on_duty_status"] == "unavailable")
    assert {"lunch", "snack break for 10", "", None} <= set(reasons)
    sizes = Counter(len(p["call_center_ids"]) for p in payloads)
    assert sizes[0] and sizes[1] and sizes[2]  # logged off, on duty for one, for several
    # agents join and leave: some keep their status while their call centers change
    by_agent = defaultdict(list)
    for event in simulation.events:
        by_agent[event.agent_id].append(event.payload)
    changes = sum(1 for events in by_agent.values() for a, b in zip(events, events[1:])
                  if a["on_duty_status"] == b["on_duty_status"] and a["call_center_ids"] != b["call_center_ids"])
    assert changes > 0


def test_statuses_last_realistically():
    simulation = generate(SimulationConfig(agents=100, seed=4, duration_ms=8 * HOUR_MS))
    by_agent = defaultdict(list)
    for event in simulation.events:
        by_agent[event.agent_id].append(event.payload)
    lengths = defaultdict(list)
    for events in by_agent.values():
        for a, b in zip(events, events[1:]):
            lengths[a["on_duty_status"]].append(b["date"] - a["date"])
    median = {status: sorted(ms)[len(ms) // 2] / 1000 for status, ms in lengths.items()}
    assert 30 <= median["available"] <= 300
    assert 60 <= median["occupied"] <= 400  # calls of a few minutes
    assert 15 <= median["wrapup"] <= 120


def test_close_windows_completes_every_window_of_the_duration():
    config = SimulationConfig(agents=10, seed=5, duration_ms=2 * HOUR_MS, close_windows=True)
    simulation = generate(config)
    expected = expected_results(simulation.payloads, [15 * 60_000, HOUR_MS], config.grace_ms)
    assert expected["complete_until_ms"] == config.start_ms + config.duration_ms
    for agent_windows in expected["agents"].values():
        assert max(int(start) for start in agent_windows["15m"]) == config.start_ms + config.duration_ms - 15 * 60_000
    # the closing events are no entries and add no time inside the duration
    plain = expected_results(generate(SimulationConfig(**{**config.__dict__, "close_windows": False})).payloads,
                             [15 * 60_000, HOUR_MS], config.grace_ms)
    for agent, windows in plain["agents"].items():
        for start, totals in windows["15m"].items():
            assert expected["agents"][agent]["15m"][start] == totals


def test_every_agent_window_sums_to_its_length_after_the_first():
    config = SimulationConfig(agents=40, seed=9, duration_ms=6 * HOUR_MS, close_windows=True)
    expected = expected_results(generate(config).payloads, [15 * 60_000, HOUR_MS])
    for windows in expected["agents"].values():
        for label, size in (("15m", 15 * 60_000), ("1h", HOUR_MS)):
            starts = sorted(windows[label])
            for start in starts[1:]:
                totals = windows[label][start]
                assert sum(totals["ms_by_status"].values()) == size
                assert sum(totals["ms_by_availability"].values()) == size
                assert sum(totals["ms_by_unavailable_reason"].values()) == totals["ms_by_status"].get("unavailable", 0)


def test_simulate_command_writes_events_and_expected_results(tmp_path):
    out = tmp_path / "day.jsonl"
    assert main(["simulate", "--agents", "5", "--duration", "1h", "--seed", "3", "--duplicates", "10%",
                 "--start", "2025-03-03T00:00:00Z", "--out", str(out)]) == 0
    deliveries = list(read_deliveries(out))
    again = generate(SimulationConfig(agents=5, duration_ms=HOUR_MS, seed=3, duplicate_share=0.1))
    assert [(d.send_ms, d.payload, d.kind) for d in deliveries] == \
        [(d.send_ms, d.payload, d.kind) for d in again.deliveries]
    import json

    document = json.loads(expected_path(out).read_text())
    assert document["simulation"]["seed"] == 3
    assert document["deliveries"] == len(deliveries)
    assert document["events"] == len(again.events)
    assert set(document["agent_states"]) == {e.agent_id for e in again.events}


def test_files_round_trip(tmp_path):
    simulation = generate(SMALL)
    path = tmp_path / "x.jsonl"
    assert write_deliveries(path, simulation.deliveries) == len(simulation.deliveries)
    assert list(read_deliveries(path)) == simulation.deliveries


def test_the_default_start_is_a_recent_midnight_that_ends_the_span_by_today():
    from onduty.commands.simulate import recent_start_ms

    now = 1_764_073_920_000  # 2025-11-25 12:32 UTC
    today = now - now % 86_400_000
    assert recent_start_ms(8 * HOUR_MS, now) == today - 86_400_000
    assert recent_start_ms(86_400_000, now) == today - 86_400_000
    assert recent_start_ms(86_400_000 + 1, now) == today - 2 * 86_400_000
