"""Real workers on the real broker: scripted events in, derived roster topics read back and compared exactly.

Derived topic names are fixed, so each test uses its own agent and call-center ids and reads only its keys.
"""

from __future__ import annotations

import json
import random
import uuid

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from schemas import AgentStatusEvent, decode_agent_status_event, dedup_identity, encode
from schemas import topics as t
from schemas.roster import AgentStateRecord, CallCenterAgentRecord, CallCenterSummaryRecord
from tests.kafka_helpers import read_records, wait_until
from tests.processor_workers import WorkerPool
from tests.samples import payload

pytestmark = pytest.mark.integration

STATUSES = ["available", "unavailable", "occupied", "wrapup", "busy", "brand-new-status"]


def scripted_events(run: str, agents: int = 12, per_agent: int = 15, seed: int = 1) -> list[AgentStatusEvent]:
    """Random status and call-center changes for ``agents`` agents, with duplicates and out-of-order deliveries."""
    rng = random.Random(seed)
    call_centers = [f"{run}-cc{i}" for i in range(4)]
    deliveries = []
    for a in range(agents):
        date = 1_700_000_000_000 + rng.randrange(60_000)
        for _ in range(per_agent):
            date += rng.randrange(1_000, 120_000)
            data = payload(
                target={"id": f"{run}-agent{a}", "name": f"agent {a}"},
                on_duty_status=rng.choice(STATUSES),
                call_center_ids=rng.sample(call_centers, k=rng.randrange(0, 4)),
                date=date, event_timestamp=date + 20,
                availability_status=rng.choice(["available", "unavailable"]),
            )
            deliveries.append(decode_agent_status_event(json.dumps(data)))
    deliveries += rng.sample(deliveries, k=len(deliveries) // 10)  # duplicates
    deliveries.sort(key=lambda e: e.date + rng.randrange(-3_000, 3_000))  # some arrive out of order
    return deliveries


def expected_state(events: list[AgentStatusEvent]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Independent reference: each agent's latest event by (date, event_timestamp, identity) is its state."""
    latest: dict[str, AgentStatusEvent] = {}
    for e in events:
        key = (e.date, e.event_timestamp or 0, dedup_identity(e))
        best = latest.get(e.agent_id)
        if best is None or key > (best.date, best.event_timestamp or 0, dedup_identity(best)):
            latest[e.agent_id] = e
    agents = {a: e.on_duty_status for a, e in latest.items()}
    rosters: dict[str, dict[str, str]] = {}
    for a, e in latest.items():
        for cc in e.call_center_ids:
            rosters.setdefault(cc, {})[a] = e.on_duty_status
    return agents, rosters


async def produce(bootstrap: str, topic: str, events: list[AgentStatusEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, encode(e), key=e.agent_id.encode(), timestamp_ms=e.date)
        await producer.flush()
    finally:
        await producer.stop()


async def fold(bootstrap: str, topic: str, run: str, struct: type) -> dict[str, object]:
    """Read a compacted topic from the start, keep the last value per key of this run (tombstones delete)."""
    decoder = msgspec.json.Decoder(struct)
    state: dict[str, object] = {}
    for record in await read_records(bootstrap, topic, expected=10**9, deadline_s=3):
        key = record.key.decode()
        if not key.startswith(run):
            continue
        if record.value is None:
            state.pop(key, None)
        else:
            state[key] = decoder.decode(record.value)
    return state


async def derived_view(bootstrap: str, run: str):
    agents = await fold(bootstrap, t.AGENT_STATE, run, AgentStateRecord)
    entries = await fold(bootstrap, t.CALLCENTER_AGENTS, run, CallCenterAgentRecord)
    summaries = await fold(bootstrap, t.CALLCENTER_SUMMARY, run, CallCenterSummaryRecord)
    agent_view = {a: r.current.on_duty_status for a, r in agents.items()}
    roster_view: dict[str, dict[str, str]] = {}
    for entry in entries.values():
        roster_view.setdefault(entry.call_center_id, {})[entry.agent_id] = entry.on_duty_status
    summary_view = {cc: s.agents_by_status for cc, s in summaries.items() if s.on_duty_agents}
    return agent_view, roster_view, summary_view


def counts(roster: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for cc, agents in roster.items():
        for status in agents.values():
            result.setdefault(cc, {}).setdefault(status, 0)
            result[cc][status] += 1
    return {cc: dict(sorted(c.items())) for cc, c in result.items()}


async def assert_converges(bootstrap: str, run: str, events: list[AgentStatusEvent]) -> None:
    expected_agents, expected_rosters = expected_state(events)
    expected = (expected_agents, expected_rosters, counts(expected_rosters))
    seen = []

    async def matches():
        seen[:] = [await derived_view(bootstrap, run)]
        return seen[0] == expected

    try:
        await wait_until(matches, deadline_s=90, interval_s=1)
    except AssertionError:
        assert seen and seen[0] == expected  # show the difference


@pytest.fixture
def run_id() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workers(kafka_bootstrap, unique_name, tmp_path):
    pool = WorkerPool(kafka_bootstrap, unique_name("raw"), unique_name("app"), tmp_path, ONDUTY_PARTITIONS="4")
    yield pool
    pool.stop_all()


async def test_one_worker_builds_exact_rosters_and_answers_queries(kafka_bootstrap, workers, run_id):
    worker = workers(1)
    events = scripted_events(run_id)
    await produce(kafka_bootstrap, workers.raw_topic, events)
    await assert_converges(kafka_bootstrap, run_id, events)

    expected_agents, expected_rosters = expected_state(events)
    agent_id, status = next(iter(expected_agents.items()))
    code, body = worker.get(f"/agents/{agent_id}")
    assert code == 200 and json.loads(body)["on_duty_status"] == status
    cc, members = next(iter(expected_rosters.items()))
    code, body = worker.get(f"/callcenters/{cc}")
    listed = {a["agent_id"]: a["on_duty_status"] for a in json.loads(body)["agents"]}
    assert code == 200 and listed == members
    code, body = worker.get(f"/agents/{run_id}-nobody")
    assert code == 404 and "unknown agent" in json.loads(body)["error"]
    code, body = worker.get(f"/callcenters/{run_id}-nowhere")
    assert code == 404 and "unknown call center" in json.loads(body)["error"]


async def test_undecodable_events_go_to_dead_letter_and_worker_goes_on(kafka_bootstrap, workers, run_id):
    workers(1)
    bad = {  # key suffix: (value, words of the reason)
        "missing-field": (b'{"target": {"id": "x"}}', "on_duty_status"),
        "tombstone": (None, "no value"),
        "too-deep": (b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),  # RecursionError
        # an integer beyond 64 bits (written by an older ingest): it stopped the workers before the schema bounded it
        "huge-event-timestamp": (json.dumps(payload(target={"id": f"{run_id}-x"}, event_timestamp=10**20)).encode(),
                                 "<= 9223372036854775807"),
    }
    # a valid event under another key: its agent's state would live on another partition than its key's
    bad["key-not-agent-id"] = (json.dumps(payload(target={"id": f"{run_id}-someone"})).encode(), "not its agent id")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for suffix, (value, _) in bad.items():
            await producer.send_and_wait(workers.raw_topic, value, key=f"{run_id}-{suffix}".encode())
    finally:
        await producer.stop()
    events = scripted_events(run_id, agents=3, per_agent=4)
    await produce(kafka_bootstrap, workers.raw_topic, events)
    await assert_converges(kafka_bootstrap, run_id, events)
    letters = {r.key.decode(): json.loads(r.value)
               for r in await read_records(kafka_bootstrap, t.DEAD_LETTER, 10**9, deadline_s=3)
               if r.key.startswith(f"{run_id}-".encode())}
    assert sorted(letters) == sorted(f"{run_id}-{suffix}" for suffix in bad)
    for suffix, (_, words) in bad.items():
        letter = letters[f"{run_id}-{suffix}"]
        assert letter["source_topic"] == workers.raw_topic and words in letter["reason"]


async def test_two_workers_give_the_same_result_and_route_queries(kafka_bootstrap, workers, run_id):
    first, second = workers(1), workers(2)
    events = scripted_events(run_id, seed=2)
    await produce(kafka_bootstrap, workers.raw_topic, events)
    await assert_converges(kafka_bootstrap, run_id, events)
    expected_agents, expected_rosters = expected_state(events)
    for agent_id, status in expected_agents.items():  # either worker answers for any agent
        for worker in (first, second):
            code, body = worker.get(f"/agents/{agent_id}")
            assert code == 200 and json.loads(body)["on_duty_status"] == status


async def test_worker_killed_mid_stream_and_replaced_loses_nothing(kafka_bootstrap, workers, run_id):
    events = scripted_events(run_id, seed=3)
    half = len(events) // 2
    victim = workers(1)
    await produce(kafka_bootstrap, workers.raw_topic, events[:half])
    await wait_until(lambda: derived_view(kafka_bootstrap, run_id), deadline_s=60)  # some output exists
    victim.kill()
    workers(2)
    await produce(kafka_bootstrap, workers.raw_topic, events[half:])
    await assert_converges(kafka_bootstrap, run_id, events)


async def test_a_worker_that_owns_nothing_of_a_key_answers_from_the_first_event(kafka_bootstrap, workers, run_id):
    first, second = workers(1), workers(2)
    event = scripted_events(run_id, agents=1, per_agent=1)[0]
    await produce(kafka_bootstrap, workers.raw_topic, [event])
    for worker in (first, second):  # one of them owns the agent's partition, the other forwards
        async def answered(worker=worker):
            code, body = worker.get(f"/agents/{event.agent_id}")
            assert code in (200, 404), f"{code}: {body[:200]!r}"
            return code == 200 and json.loads(body)["on_duty_status"] == event.on_duty_status

        await wait_until(answered, deadline_s=60)
