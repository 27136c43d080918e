"""The ingest service against a real Kafka broker: what lands on the topics, and nothing lost when Kafka is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest import IngestSettings, create_app
from ingest.records import DEDUP_HEADER, RECEIVED_HEADER
from onduty.kafka_broker import BrokerConfig, LocalKafkaBroker, free_port
from schemas import decode_agent_status_event, dedup_identity
from schemas.rejected import RejectedAgentStatus
from tests.kafka_helpers import create_topics, read_records, wait_until
from tests.samples import payload

pytestmark = pytest.mark.integration

SECRET = "integration-secret-0123456789abcdef012345"
URL = "/webhooks/dialpad/agent-status"


def settings_for(bootstrap: str, spool_dir: Path, raw: str, rejected: str) -> IngestSettings:
    return IngestSettings(webhook_secrets=(SECRET,), kafka_bootstrap=bootstrap, raw_topic=raw, rejected_topic=rejected,
                          spool_dir=spool_dir, publish_deadline_ms=500, kafka_request_timeout_ms=3000,
                          shutdown_timeout_ms=3000)


async def serve(settings: IngestSettings) -> TestClient:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


def signed_event(i: int, base_ms: int) -> tuple[dict, str]:
    claims = payload(target={"id": 7_000_000_000_000_000 + i % 4}, date=base_ms + i)
    return claims, jwt.encode(claims, SECRET, algorithm="HS256")


async def test_signed_event_lands_with_key_value_headers_and_event_time(kafka_bootstrap, unique_name, tmp_path):
    raw, rejected = unique_name("raw"), unique_name("rejected")
    await create_topics(kafka_bootstrap, [raw, rejected], partitions=3)
    client = await serve(settings_for(kafka_bootstrap, tmp_path / "spool", raw, rejected))
    date_ms = int(time.time() * 1000) - 60_000
    claims, token = signed_event(1, date_ms)
    try:
        before_ms = int(time.time() * 1000)
        response = await client.post(URL, data=token)
        assert response.status == 202 and (await response.json())["kept_in"] == "kafka"
        invalid = jwt.encode({**claims, "date": "soon"}, SECRET, algorithm="HS256")
        assert (await client.post(URL, data=invalid)).status == 422
    finally:
        await client.close()

    [record] = await read_records(kafka_bootstrap, raw, expected=1)
    event = decode_agent_status_event(record.value)
    assert record.key == b"7000000000000001" and event.agent_id == "7000000000000001"
    assert event == decode_agent_status_event(json.dumps(claims))
    assert record.timestamp == claims["date"] == date_ms + 1
    headers = dict(record.headers)
    assert headers[DEDUP_HEADER].decode() == dedup_identity(event)
    assert before_ms <= int(headers[RECEIVED_HEADER]) <= int(time.time() * 1000)

    [kept] = await read_records(kafka_bootstrap, rejected, expected=1)
    import msgspec

    reason = msgspec.json.decode(kept.value, type=RejectedAgentStatus)
    assert kept.key == b"7000000000000001" and reason.path == "$.date"
    assert json.loads(reason.payload)["date"] == "soon"


async def test_restart_of_the_service_with_a_non_empty_spool_drains_it(kafka_bootstrap, unique_name, tmp_path):
    raw, rejected = unique_name("raw"), unique_name("rejected")
    await create_topics(kafka_bootstrap, [raw, rejected], partitions=1)
    spool_dir = tmp_path / "spool"
    nowhere = f"127.0.0.1:{free_port()}"  # no broker listens there: every event goes to the spool
    base_ms = int(time.time() * 1000) - 60_000
    client = await serve(settings_for(nowhere, spool_dir, raw, rejected))
    try:
        for i in range(10):
            response = await client.post(URL, data=signed_event(i, base_ms)[1])
            assert response.status == 202 and (await response.json())["kept_in"] == "spool"
    finally:
        await client.close()
    assert any(spool_dir.glob("*.spool"))

    client = await serve(settings_for(kafka_bootstrap, spool_dir, raw, rejected))
    try:
        records = await read_records(kafka_bootstrap, raw, expected=10)
        assert [r.timestamp - base_ms for r in records] == list(range(10))  # arrival order
        metrics = await wait_until(lambda: _spool_empty(client), deadline_s=15)
        assert "onduty_ingest_spool_drained_total 10" in metrics
    finally:
        await client.close()


@pytest.mark.parametrize("spooled_first", [False, True], ids=["sent-directly", "drained-from-the-spool"])
async def test_an_event_the_topic_refuses_for_good_is_set_aside_and_the_rest_lands(kafka_bootstrap, unique_name,
                                                                                     tmp_path, spooled_first):
    raw, rejected = unique_name("raw"), unique_name("rejected")
    await create_topics(kafka_bootstrap, [raw, rejected], partitions=1, configs={"max.message.bytes": "4000"})
    spool_dir = tmp_path / "spool"
    base_ms = int(time.time() * 1000) - 60_000
    big_claims = payload(target={"id": 7_000_000_000_000_009}, date=base_ms + 5, on_duty_status_reason="x" * 8000)
    if spooled_first:  # all ten in the spool first: the refused one sits in the middle of the drainer's batch
        client = await serve(settings_for(f"127.0.0.1:{free_port()}", spool_dir, raw, rejected))
        try:
            for i in range(10):
                token = jwt.encode(big_claims, SECRET, algorithm="HS256") if i == 5 else signed_event(i, base_ms)[1]
                assert (await client.post(URL, data=token)).status == 202
        finally:
            await client.close()
    client = await serve(settings_for(kafka_bootstrap, spool_dir, raw, rejected))
    try:
        for i in range(0 if spooled_first else 10):
            token = jwt.encode(big_claims, SECRET, algorithm="HS256") if i == 5 else signed_event(i, base_ms)[1]
            assert (await client.post(URL, data=token)).status == 202  # kept: in Kafka, or in the spool
        records = await read_records(kafka_bootstrap, raw, expected=9)
        assert [r.timestamp - base_ms for r in records] == [0, 1, 2, 3, 4, 6, 7, 8, 9]  # nothing waits behind it
        metrics = await wait_until(lambda: _spool_empty(client), deadline_s=15)
        assert "onduty_ingest_undeliverable_total 1" in metrics
    finally:
        await client.close()
    [kept] = (spool_dir / "undeliverable").glob("*.json")
    undeliverable = json.loads(kept.read_text())
    assert json.loads(undeliverable["value"])["on_duty_status_reason"] == "x" * 8000
    assert "RecordTooLarge" in undeliverable["reason"] or "MessageSizeTooLarge" in undeliverable["reason"]


async def _spool_empty(client: TestClient) -> str | None:
    text = await (await client.get("/metrics")).text()
    return text if "onduty_ingest_spool_depth 0" in text else None


@contextlib.asynccontextmanager
async def service_on_its_own_broker(unique_name, tmp_path: Path):
    """A broker of the test's own (to stop or kill), its topics, and the service publishing to it."""
    broker = LocalKafkaBroker(BrokerConfig(tmp_path / "kafka", port=free_port(), partitions=3))
    bootstrap = broker.start()
    client = None
    try:
        raw, rejected = unique_name("raw"), unique_name("rejected")
        await create_topics(bootstrap, [raw, rejected], partitions=3)
        client = await serve(settings_for(bootstrap, tmp_path / "spool", raw, rejected))
        yield broker, bootstrap, raw, client
    finally:
        if client is not None:
            await client.close()
        broker.stop()


async def test_broker_stopped_events_are_accepted_and_all_land_once_it_is_back(unique_name, tmp_path):
    async with service_on_its_own_broker(unique_name, tmp_path) as (broker, bootstrap, raw, client):
        base_ms = int(time.time() * 1000) - 60_000
        assert (await (await client.post(URL, data=signed_event(0, base_ms)[1])).json())["kept_in"] == "kafka"

        broker.stop()
        await wait_until(lambda: _ready_mode(client, "spool"), deadline_s=30)
        count = 40
        for i in range(1, count + 1):
            response = await client.post(URL, data=signed_event(i, base_ms)[1])
            assert response.status == 202 and (await response.json())["kept_in"] == "spool"

        broker.start()
        records = await read_records(bootstrap, raw, expected=count + 2, deadline_s=60)
        assert sorted(r.timestamp - base_ms for r in records) == list(range(count + 1))  # exact: none missing, no extra
        await wait_until(lambda: _ready_mode(client, "kafka"), deadline_s=30)


async def test_broker_killed_under_load_every_accepted_event_lands(unique_name, tmp_path):
    """SIGKILL with produce rounds on the way: what was answered 202 lands once the broker is back (at least once:
    a round the broker wrote before dying may land again from the spool)."""
    async with service_on_its_own_broker(unique_name, tmp_path) as (broker, bootstrap, raw, client):
        base_ms = int(time.time() * 1000) - 60_000
        accepted: list[int] = []
        kept_in: dict[str, int] = {}

        async def post(i: int) -> None:
            response = await client.post(URL, data=signed_event(i, base_ms)[1])
            assert response.status == 202, await response.text()
            accepted.append(i)
            mode = (await response.json())["kept_in"]
            kept_in[mode] = kept_in.get(mode, 0) + 1

        async def sender(first: int, count: int, step: int) -> None:
            for i in range(first, count, step):
                await post(i)

        count, senders = 600, 24
        load = [asyncio.create_task(sender(first, count, senders)) for first in range(senders)]
        await wait_until(lambda: len(accepted) >= 150, deadline_s=30)
        broker.process.kill()  # mid-load: rounds in flight, connections broken
        broker.process.wait()
        await wait_until(lambda: kept_in.get("spool", 0) >= 50, deadline_s=60)
        broker.start()
        await asyncio.gather(*load)
        await wait_until(lambda: _spool_empty(client), deadline_s=60)

        records = await read_records(bootstrap, raw, expected=count * 2, deadline_s=10)  # all there is
        landed = {r.timestamp - base_ms for r in records}
        assert sorted(accepted) == list(range(count)) and landed == set(accepted)
        assert kept_in["kafka"] >= 150 and kept_in["spool"] >= 50  # both ways were taken


async def _ready_mode(client: TestClient, mode: str) -> bool:
    return (await (await client.get("/readyz")).json())["mode"] == mode
