"""The harness's broker is a real Kafka: produce with aiokafka, consume back what was sent."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from schemas import decode_agent_status_event, encode
from tests.kafka_helpers import create_topics, read_records
from tests.samples import payload


async def test_produce_and_consume_events_through_real_broker(kafka_bootstrap, unique_name):
    topic = unique_name("raw")
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    events = [decode_agent_status_event(encode_payload(i)) for i in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, encode(event), key=event.agent_id.encode(), timestamp_ms=event.date)
    finally:
        await producer.stop()

    records = await read_records(kafka_bootstrap, topic, expected=len(events))
    assert len(records) == len(events)
    got = sorted((decode_agent_status_event(r.value) for r in records), key=lambda e: e.date)
    assert got == events
    for record in records:
        event = decode_agent_status_event(record.value)
        assert record.key == event.agent_id.encode()
        assert record.timestamp == event.date
    # one agent's events share a partition
    partitions_by_agent: dict[bytes, set[int]] = {}
    for record in records:
        partitions_by_agent.setdefault(record.key, set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions_by_agent.values())


def encode_payload(i: int) -> bytes:
    import json

    return json.dumps(payload(target={"id": 1000 + i % 4}, date=1_700_000_000_000 + i * 1000)).encode()
