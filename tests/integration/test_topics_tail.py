"""`onduty tail` shows a person each record's key and decoded value, and tombstones as such."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from aiokafka import AIOKafkaProducer

from onduty.commands.tail import tail
from tests.kafka_helpers import create_topics

pytestmark = pytest.mark.integration


def tail_args(topic: str, **overrides) -> argparse.Namespace:
    defaults = dict(topic=topic, from_beginning=True, max=None, to_end=True, compact=True)
    return argparse.Namespace(**{**defaults, **overrides})


async def test_tail_prints_keys_values_and_tombstones_then_stops(kafka_bootstrap, unique_name):
    topic = unique_name("roster")
    await create_topics(kafka_bootstrap, [topic], partitions=1, configs={"cleanup.policy": "compact"})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps({"agent_id": "42", "on_duty_status": "available"}).encode(),
                                     key=b"cc1:42", timestamp_ms=1_700_000_000_000)
        await producer.send_and_wait(topic, None, key=b"cc1:42", timestamp_ms=1_700_000_060_000)
    finally:
        await producer.stop()

    out = io.StringIO()
    assert await tail(tail_args(topic), kafka_bootstrap, out) == 0
    lines = out.getvalue().splitlines()
    assert lines == [
        f'{topic}[0]@0 2023-11-14T22:13:20.000Z key=cc1:42 {{"agent_id": "42", "on_duty_status": "available"}}',
        f"{topic}[0]@1 2023-11-14T22:14:20.000Z key=cc1:42 TOMBSTONE (key deleted)",
    ]

    out = io.StringIO()
    assert await tail(tail_args(topic, max=1, to_end=False, compact=False), kafka_bootstrap, out) == 0
    assert out.getvalue().splitlines()[1:] == ["  {", '    "agent_id": "42",', '    "on_duty_status": "available"', "  }"]


async def test_tail_of_an_unknown_topic_says_so_and_creates_nothing(kafka_bootstrap, unique_name, capsys):
    topic = unique_name("absent")
    assert await tail(tail_args(topic), kafka_bootstrap, io.StringIO()) == 2
    assert f"no topic {topic!r}" in capsys.readouterr().err
