"""Edges of time in status on the real broker with real workers: idle advance, late and invalid dates, intervals.

* Live mode closes windows after a silence (the partition's watermark follows the wall clock once idle); replay
  mode never looks at the wall clock, so the same silence closes nothing.
* Too-late, far-future and seconds-instead-of-milliseconds dates land on the late-events topic with the reason,
  and none of them moves the watermark: the other agents' windows stay open.
* The status intervals of a small known sequence, with one late correction, read back record by record and
  folded the way docs/semantics.md tells a consumer to.

Derived topic names are fixed and shared, so each test uses its own agent and call-center ids and reads only
those keys.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ingest.records import event_record
from schemas import AgentStatusEvent, decode_agent_status_event
from schemas import topics as t
from schemas.time_in_status import AgentTimeInStatus, CallCenterTimeInStatus, LateEvent, StatusInterval
from tests.kafka_helpers import wait_until
from tests.processor_workers import WorkerProcess
from tests.samples import payload
from tests.unit.test_time_in_status import as_dict, ground_truth

pytestmark = pytest.mark.integration

M = 60_000
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z: replay-mode tests use fixed dates


def event(agent: str, date: int, status: str, ccs: list[str], reason: str = "",
          availability: str | None = "available") -> AgentStatusEvent:
    data = payload(target={"id": agent}, on_duty_status=status, call_center_ids=ccs, date=date,
                   event_timestamp=date + 7, on_duty_status_reason=reason, availability_status=availability)
    return decode_agent_status_event(json.dumps(data))


async def produce(bootstrap: str, topic: str, events: list[AgentStatusEvent]) -> None:
    """Send the events as ingest does (its records: a date far ahead keeps the receive time as Kafka timestamp)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for e in events:
            r = event_record(e, topic, int(time.time() * 1000))
            await producer.send(r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms, headers=r.headers)
        await producer.flush()
    finally:
        await producer.stop()


_partitions: dict[str, list[int]] = {}


async def read_to_end(bootstrap: str, topic: str, prefix: str) -> list:
    """Every record of ``topic`` (all partitions, up to their current end) whose key starts with ``prefix``."""
    if topic not in _partitions:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        _partitions[topic] = sorted(p["partition"] for p in described["partitions"])
    partitions = [TopicPartition(topic, p) for p in _partitions[topic]]
    assert partitions, f"{topic} does not exist"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []
        pending = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(*pending, timeout_ms=500)).items():
                records += [r for r in batch if r.offset < ends[tp]]
                if batch and batch[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
        assert not pending, f"could not read {topic} to its end"
        return [r for r in records if r.key is not None and r.key.decode().startswith(prefix)]
    finally:
        await consumer.stop()


async def window_records(bootstrap: str, run: str) -> tuple[list[AgentTimeInStatus], list[CallCenterTimeInStatus]]:
    agents = msgspec.json.Decoder(AgentTimeInStatus)
    ccs = msgspec.json.Decoder(CallCenterTimeInStatus)
    return ([agents.decode(r.value) for r in await read_to_end(bootstrap, t.AGENT_TIME_IN_STATUS, run)],
            [ccs.decode(r.value) for r in await read_to_end(bootstrap, t.CALLCENTER_TIME_IN_STATUS, run)])


def latest_totals(records: list, id_field: str, until_ms: int) -> dict:
    """What a consumer of the compacted topic keeps: the highest revision per key, windows ending by ``until_ms``."""
    latest: dict = {}
    for record in records:
        key = (getattr(record, id_field), record.window_size_ms, record.window_start_ms)
        if record.window_end_ms <= until_ms and (key not in latest or record.revision > latest[key].revision):
            latest[key] = record
    assert all(r.final for r in latest.values())
    return {key: as_dict(r.totals) for key, r in latest.items() if as_dict(r.totals)}


async def assert_windows_exact(bootstrap: str, run: str, events: list[AgentStatusEvent], sizes: tuple[int, ...],
                               until_ms: int, deadline_s: float = 60) -> None:
    """Every window ending by ``until_ms`` is published, per agent and per call center, with the exact totals."""
    expected = ground_truth(events, sizes, until_ms)
    seen: list = []

    async def matches() -> bool:
        agents, ccs = await window_records(bootstrap, run)
        seen[:] = [(latest_totals(agents, "agent_id", until_ms), latest_totals(ccs, "call_center_id", until_ms))]
        return seen[0] == expected

    try:
        await wait_until(matches, deadline_s=deadline_s, interval_s=0.5)
    except AssertionError:
        assert seen and seen[0][0] == expected[0]  # show the difference
        assert seen[0][1] == expected[1]


@pytest.fixture
def start_workers(kafka_bootstrap, unique_name, tmp_path):
    """Start workers, each with its own raw topic and app id, in parallel: ``start_workers(env, env, ...)``."""
    started: list[WorkerProcess] = []

    def start(*envs: dict[str, str]) -> list[WorkerProcess]:
        workers = [
            WorkerProcess(kafka_bootstrap, unique_name(f"raw{n}"), unique_name(f"app{n}"), tmp_path / f"worker{n}",
                          **{"ONDUTY_PARTITIONS": "1", **env})
            for n, env in enumerate(envs, start=len(started))
        ]
        started.extend(workers)
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(WorkerProcess.start, workers))
        return workers

    yield start
    for worker in started:
        worker.stop()


def run_ids(n: int) -> list[str]:
    token = uuid.uuid4().hex[:8]
    return [f"e{token}{chr(ord('a') + i)}" for i in range(n)]


# ---------------------------------------------------------------------------------------------- idle advance


def recent_events(run: str, now: int) -> list[AgentStatusEvent]:
    """Two agents, three call centers, dates within the last two seconds."""
    return [
        event(f"{run}-a1", now - 1_500, "available", [f"{run}-cc1"]),
        event(f"{run}-a2", now - 1_200, "available", [f"{run}-cc1"], availability=None),
        event(f"{run}-a1", now - 1_000, "busy", [f"{run}-cc1", f"{run}-cc2"], availability="unavailable"),
        event(f"{run}-a1", now - 400, "unavailable", [f"{run}-cc2"], reason="break", availability="unavailable"),
    ]


async def test_live_mode_closes_windows_after_a_silence_and_replay_mode_does_not(kafka_bootstrap, start_workers):
    size, idle_after, grace = 5_000, 2_000, 1_000
    common = {"ONDUTY_WINDOWS": "5s", "ONDUTY_GRACE": "1s", "ONDUTY_IDLE_AFTER": "2s", "ONDUTY_PARTITIONS": "2"}
    live, replay = start_workers({**common, "ONDUTY_IDLE_ADVANCE": "true"},
                                 {**common, "ONDUTY_IDLE_ADVANCE": "false"})
    live_run, replay_run = run_ids(2)
    now = int(time.time() * 1000)
    live_events, replay_events = recent_events(live_run, now), recent_events(replay_run, now)
    await produce(kafka_bootstrap, live.env["ONDUTY_RAW_TOPIC"], live_events)
    await produce(kafka_bootstrap, replay.env["ONDUTY_RAW_TOPIC"], replay_events)
    last_date = max(e.date for e in live_events)
    until = last_date - last_date % size + size  # end of the window of the latest event

    # live: no further event, yet every window up to the latest event's closes, per agent and per call center
    await assert_windows_exact(kafka_bootstrap, live_run, live_events, (size,), until)
    # by now the wall clock is past the point where idle advance closes that window
    assert time.time() * 1000 >= until + idle_after + grace

    # replay: the same events were processed (their intervals are out) ...
    async def replay_intervals() -> bool:
        return len(await read_to_end(kafka_bootstrap, t.STATUS_INTERVALS, replay_run)) == 2

    await wait_until(replay_intervals, deadline_s=30, interval_s=0.5)
    # ... and the same silence closed nothing the events' own watermark does not pass
    watermark = last_date - grace
    agents, ccs = await window_records(kafka_bootstrap, replay_run)
    assert [r.window_start_ms for r in agents + ccs if r.window_end_ms > watermark] == []
    code, body = replay.get(f"/agents/{replay_run}-a1/time-in-status?size=5s&from={until - size}&to={until}")
    assert code == 200 and [w["final"] for w in json.loads(body)["windows"]] == [False]

    # replay: later events (one per agent: each may have its own partition) close them, with the same totals
    closing = [event(f"{replay_run}-{a}", until + grace, "available", []) for a in ("a1", "a2")]
    await produce(kafka_bootstrap, replay.env["ONDUTY_RAW_TOPIC"], closing)
    await assert_windows_exact(kafka_bootstrap, replay_run, replay_events + closing, (size,), until)


# ---------------------------------------------------------------------------------------------- late and invalid


async def test_late_and_implausible_dates_go_to_late_events_and_move_no_watermark(kafka_bootstrap, start_workers):
    (worker,) = start_workers({"ONDUTY_WINDOWS": "15m", "ONDUTY_GRACE": "1m", "ONDUTY_LATE_HORIZON": "1h",
                               "ONDUTY_IDLE_ADVANCE": "false"})
    raw = worker.env["ONDUTY_RAW_TOPIC"]
    (run,) = run_ids(1)
    cc = f"{run}-cc1"
    agent = f"{run}-a1"
    before = [event(agent, T0, "available", [cc]), event(agent, T0 + 20 * M, "busy", [cc])]
    watermark = T0 + 19 * M  # one window closed, [T0 + 15m, T0 + 30m) open
    spec_date = payload()["date"]
    invalid = [
        event(f"{run}-future", int(f"{spec_date}0"), "busy", [cc]),  # the spec's date with one digit too many
        event(f"{run}-seconds", spec_date // 1000, "busy", [cc]),  # seconds, not milliseconds
        event(f"{run}-ancient", watermark - 60 * M - 1, "busy", [cc]),  # just beyond the 1 h horizon
        event(agent, int(f"{spec_date}0"), "unavailable", [cc], reason="typo"),  # the counted agent's own
    ]
    await produce(kafka_bootstrap, raw, before + invalid)

    decoder = msgspec.json.Decoder(LateEvent)

    async def late_events() -> list[LateEvent]:
        records = [decoder.decode(r.value) for r in await read_to_end(kafka_bootstrap, t.LATE_EVENTS, run)]
        return records if len(records) >= len(invalid) else []

    late = await wait_until(late_events, deadline_s=60, interval_s=0.5)
    # one record each (keyed by agent id: no order across partitions), all seen at the same watermark
    assert sorted((r.agent_id, r.reason, r.date_ms, r.watermark_ms) for r in late) == sorted([
        (f"{run}-future", "date_in_future", invalid[0].date, watermark),
        (f"{run}-seconds", "date_before_2001", invalid[1].date, watermark),
        (f"{run}-ancient", "beyond_late_horizon", invalid[2].date, watermark),
        (agent, "date_in_future", invalid[3].date, watermark),
    ])
    assert sorted((r.event for r in late), key=lambda e: e.agent_id) == sorted(invalid, key=lambda e: e.agent_id)

    # the watermark did not move: only the first window is closed, for the agent and its call center
    agents, ccs = await window_records(kafka_bootstrap, run)
    assert [(r.agent_id, r.window_start_ms) for r in agents] == [(agent, T0)]
    code, body = worker.get(f"/agents/{agent}/time-in-status?size=15m&from={T0}&to={T0 + 30 * M}")
    assert code == 200
    assert [(w["window_start_ms"], w["final"]) for w in json.loads(body)["windows"]] == [(T0, True), (T0 + 15 * M, False)]
    for nobody in (f"{run}-future", f"{run}-seconds", f"{run}-ancient"):  # an agent known only by its bad event
        code, body = worker.get(f"/agents/{nobody}/time-in-status?size=15m")
        assert code == 404 and "unknown agent" in json.loads(body)["error"], body

    # a real event moves it: the open window closes once, with the right totals, and nothing counted the others
    after = event(agent, T0 + 31 * M, "available", [cc])
    await produce(kafka_bootstrap, raw, [after])
    await assert_windows_exact(kafka_bootstrap, run, before + [after], (15 * M,), T0 + 30 * M)
    agents, ccs = await window_records(kafka_bootstrap, run)
    assert sorted((r.agent_id, r.window_start_ms) for r in agents) == [(agent, T0), (agent, T0 + 15 * M)]
    assert sorted((r.call_center_id, r.window_start_ms, r.revision) for r in ccs) == [
        (cc, T0, 1), (cc, T0 + 15 * M, 1)]


# ---------------------------------------------------------------------------------------------- status intervals


def fold_intervals(records: list[StatusInterval]) -> list[StatusInterval]:
    """What docs/semantics.md tells a consumer: the last record (topic order) per (agent, start_ms) wins."""
    latest: dict[tuple[str, int], StatusInterval] = {}
    for record in records:
        latest[(record.agent_id, record.start_ms)] = record
    return sorted(latest.values(), key=lambda r: (r.agent_id, r.start_ms))


async def test_status_intervals_of_a_known_sequence_with_a_late_correction(kafka_bootstrap, start_workers):
    (worker,) = start_workers({"ONDUTY_WINDOWS": "15m", "ONDUTY_GRACE": "1m", "ONDUTY_IDLE_ADVANCE": "false"})
    (run,) = run_ids(1)
    agent, cc1, cc2 = f"{run}-a1", f"{run}-cc1", f"{run}-cc2"
    events = [
        event(agent, T0, "available", [cc1]),
        event(agent, T0 + 10 * M, "unavailable", [cc1], reason="lunch", availability="unavailable"),
        event(agent, T0 + 30 * M, "busy", [cc2, cc1], availability=None),
        event(agent, T0 + 50 * M, "available", [cc2]),
        # 30 minutes late (the watermark is at T0 + 49m): splits the lunch break
        event(agent, T0 + 20 * M, "wrapup", [cc1], availability="unavailable"),
        event(agent, T0 + 30 * M, "busy", [cc2, cc1], availability=None),  # a duplicate: publishes nothing
        event(agent, T0 + 55 * M, "available", [cc1, cc2]),  # no status change, call centers change
    ]
    await produce(kafka_bootstrap, worker.env["ONDUTY_RAW_TOPIC"], events)

    def interval(start: int, end: int, status: str, ccs: list[str], reason: str = "", availability: str = "available",
                 late: bool = False) -> StatusInterval:
        return StatusInterval(agent, status, T0 + start * M, T0 + end * M, (end - start) * M, ccs, reason,
                              availability, late)

    expected = [
        interval(0, 10, "available", [cc1]),
        interval(10, 30, "unavailable", [cc1], "lunch", "unavailable"),
        interval(30, 50, "busy", [cc1, cc2], availability="unknown"),
        interval(10, 20, "unavailable", [cc1], "lunch", "unavailable", late=True),  # same start: supersedes
        interval(20, 30, "wrapup", [cc1], availability="unavailable", late=True),
        interval(50, 55, "available", [cc2]),
    ]
    decoder = msgspec.json.Decoder(StatusInterval)
    seen: list = []

    async def published() -> bool:
        seen[:] = [decoder.decode(r.value) for r in await read_to_end(kafka_bootstrap, t.STATUS_INTERVALS, run)]
        return len(seen) >= len(expected)

    await wait_until(published, deadline_s=60, interval_s=0.5)
    assert seen == expected
    assert [(r.start_ms, r.end_ms, r.on_duty_status) for r in fold_intervals(seen)] == [
        (T0, T0 + 10 * M, "available"),
        (T0 + 10 * M, T0 + 20 * M, "unavailable"),
        (T0 + 20 * M, T0 + 30 * M, "wrapup"),
        (T0 + 30 * M, T0 + 50 * M, "busy"),
        (T0 + 50 * M, T0 + 55 * M, "available"),
    ]
    # the folded intervals tile the timeline and agree with the window totals
    folded = fold_intervals(seen)
    assert all(a.end_ms == b.start_ms for a, b in zip(folded, folded[1:]))
    await assert_windows_exact(kafka_bootstrap, run, events, (15 * M,), T0 + 45 * M)
