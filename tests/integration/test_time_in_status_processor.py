"""Real workers on the real broker: a known day of events in, final window records read back and compared exactly.

Expected totals come from the unit tests' independent ``ground_truth``. Every agent gets a last event two hours
after the day, so every partition's watermark passes the day's end and every window of the day closes.
"""

from __future__ import annotations

import json
import random
import uuid

import msgspec
import pytest

from schemas import AgentStatusEvent, decode_agent_status_event
from schemas import topics as t
from schemas.time_in_status import AgentTimeInStatus, CallCenterTimeInStatus
from tests.integration.test_roster_processor import produce
from tests.kafka_helpers import read_records, wait_until
from tests.processor_workers import WorkerPool
from tests.samples import payload
from tests.unit.test_time_in_status import as_dict, ground_truth

pytestmark = pytest.mark.integration

DAY = 86_400_000
HOUR = 3_600_000
START = 1_700_006_400_000  # 2023-11-15T00:00:00Z
SIZES = (HOUR, DAY)
STATUSES = ["available", "unavailable", "occupied", "wrapup", "busy"]


def known_day(run: str, agents: int = 6, per_agent: int = 30, seed: int = 5) -> list[AgentStatusEvent]:
    """A day of status changes for several agents and call centers; duplicates and some late deliveries."""
    rng = random.Random(seed)
    call_centers = [f"{run}-cc{i}" for i in range(3)]
    events = []
    for a in range(agents):
        date = START + rng.randrange(HOUR)
        for n in range(per_agent + 1):
            date += rng.randrange(60_000, 90 * 60_000) if n < per_agent else 0
            date = min(date, START + DAY - 1) if n < per_agent else START + DAY + 2 * HOUR
            data = payload(
                target={"id": f"{run}-agent{a}"}, on_duty_status=rng.choice(STATUSES),
                call_center_ids=rng.sample(call_centers, k=rng.randrange(0, 3)), date=date,
                event_timestamp=date + 7, availability_status=rng.choice(["available", "unavailable", None]),
                on_duty_status_reason=rng.choice(["", "lunch", "break"]),
            )
            events.append(decode_agent_status_event(json.dumps(data)))
    closing = [e for e in events if e.date == START + DAY + 2 * HOUR]
    day = [e for e in events if e.date != START + DAY + 2 * HOUR]
    day += rng.sample(day, k=len(day) // 10)  # duplicates
    day.sort(key=lambda e: e.date + rng.randrange(-20 * 60_000, 20 * 60_000))  # late beyond the grace, too
    late = rng.sample(day, k=5)  # a few hours late: corrections of closed windows
    day = [e for e in day if e not in late] + late
    return day + closing


async def final_totals(bootstrap: str, run: str) -> tuple[dict, dict]:
    """The highest revision per key of this run's windows inside the day, as plain totals."""
    views = []
    for topic, struct, id_field in ((t.AGENT_TIME_IN_STATUS, AgentTimeInStatus, "agent_id"),
                                    (t.CALLCENTER_TIME_IN_STATUS, CallCenterTimeInStatus, "call_center_id")):
        decoder = msgspec.json.Decoder(struct)
        latest: dict = {}
        for record in await read_records(bootstrap, topic, expected=10**9, deadline_s=3):
            if not record.key.decode().startswith(run):
                continue
            value = decoder.decode(record.value)
            key = (getattr(value, id_field), value.window_size_ms, value.window_start_ms)
            if key not in latest or value.revision > latest[key].revision:
                latest[key] = value
        views.append({key: as_dict(v.totals) for key, v in latest.items()
                      if v.window_end_ms <= START + DAY and as_dict(v.totals)})
    return views[0], views[1]


async def assert_exact(bootstrap: str, run: str, events: list[AgentStatusEvent]) -> None:
    expected = ground_truth(events, SIZES, START + DAY)
    seen: list = []

    async def matches():
        seen[:] = [await final_totals(bootstrap, run)]
        return seen[0] == expected

    try:
        await wait_until(matches, deadline_s=150, interval_s=2)
    except AssertionError:
        assert seen and seen[0][0] == expected[0]
        assert seen[0][1] == expected[1]


@pytest.fixture
def run_id() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workers(kafka_bootstrap, unique_name, tmp_path):
    pool = WorkerPool(kafka_bootstrap, unique_name("raw"), unique_name("app"), tmp_path, ONDUTY_PARTITIONS="4", ONDUTY_WINDOWS="1h,1d")
    yield pool
    pool.stop_all()


async def test_one_worker_gives_exact_window_totals_and_answers_queries(kafka_bootstrap, workers, run_id):
    worker = workers(1)
    events = known_day(run_id)
    await produce(kafka_bootstrap, workers.raw_topic, events)
    await assert_exact(kafka_bootstrap, run_id, events)

    agents, _ = ground_truth(events, SIZES, START + DAY)
    agent_id = f"{run_id}-agent0"
    code, body = worker.get(f"/agents/{agent_id}/time-in-status?size=1h&from={START}&to={START + DAY}")
    assert code == 200, body
    answered = {w["window_start_ms"]: w["totals"] for w in json.loads(body)["windows"] if w["totals"]}
    assert answered == {start: totals for (a, size, start), totals in agents.items() if a == agent_id and size == HOUR}
    code, body = worker.get(f"/agents/{agent_id}/time-in-status?size=7m")
    assert code == 400 and "not a configured window size" in json.loads(body)["error"]
    code, body = worker.get(f"/agents/{run_id}-nobody/time-in-status")
    assert code == 404 and "unknown agent" in json.loads(body)["error"]
    code, body = worker.get(f"/callcenters/{run_id}-cc0/time-in-status?size=1d&from={START}&to={START + DAY}")
    assert code == 200 and len(json.loads(body)["windows"]) == 1


async def test_two_workers_give_the_same_totals(kafka_bootstrap, workers, run_id):
    workers(1), workers(2)
    events = known_day(run_id, seed=6)
    await produce(kafka_bootstrap, workers.raw_topic, events)
    await assert_exact(kafka_bootstrap, run_id, events)


async def test_worker_killed_mid_stream_and_replaced_double_counts_nothing(kafka_bootstrap, workers, run_id):
    events = known_day(run_id, seed=7)
    half = len(events) // 2
    victim = workers(1)
    await produce(kafka_bootstrap, workers.raw_topic, events[:half])
    await wait_until(lambda: final_totals(kafka_bootstrap, run_id), deadline_s=60)
    victim.kill()
    workers(2)
    await produce(kafka_bootstrap, workers.raw_topic, events[half:])
    await assert_exact(kafka_bootstrap, run_id, events)
