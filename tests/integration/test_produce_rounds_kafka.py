"""Direct produce rounds (``ingest.produce_rounds``) against a real broker: every record lands once, in order,
also when the connection breaks with a round on the way."""

from __future__ import annotations

import asyncio
import time

import pytest

from ingest import produce_rounds
from ingest.produce_codec import ProduceRoundV3To7
from ingest.publisher import KafkaPublisher
from ingest.records import OutboundRecord
from tests.kafka_helpers import create_topics, read_records

pytestmark = pytest.mark.integration


def records(topic: str, count: int) -> list[OutboundRecord]:
    now_ms = int(time.time() * 1000)
    return [OutboundRecord(topic, str(1000 + i % 7).encode(), b"v%d" % i, [("onduty-dedup-id", b"%032d" % i)],
                           now_ms + i, now_ms) for i in range(count)]


async def test_records_sent_in_direct_rounds_land_once_in_order_across_a_broken_connection(
        kafka_bootstrap, unique_name, monkeypatch):
    topic = unique_name("raw")
    await create_topics(kafka_bootstrap, [topic], partitions=4)
    rounds, broken, written_as = [], [], []
    send = produce_rounds.DirectRounds.send

    def send_then_break(self, node, builders):
        acks = send(self, node, builders)
        rounds.append(len(builders))
        connection = self._client._conns[(node, produce_rounds.ConnectionGroup.DEFAULT)]
        written_as.append(type(connection._requests[-1][1]))  # the request, as the connection keeps it
        if len(rounds) == 2:  # the request is written: the broker gets it, its response never reaches us
            connection.close(reason=produce_rounds.CloseReason.CONNECTION_BROKEN)
            broken.append(node)
        return acks

    monkeypatch.setattr(produce_rounds.DirectRounds, "send", send_then_break)
    publisher = KafkaPublisher(kafka_bootstrap, publish_deadline_s=10.0, request_timeout_ms=5000)
    assert await publisher.start()
    sent = records(topic, 200)
    try:
        for wave in range(0, len(sent), 40):
            await asyncio.gather(*(publisher.send(r) for r in sent[wave:wave + 40]))
    finally:
        await publisher.stop(5.0)
    assert broken and len(rounds) >= 3  # rounds went direct before and after the broken one
    assert set(written_as) == {ProduceRoundV3To7}  # written and read by ingest.produce_codec

    landed = await read_records(kafka_bootstrap, topic, expected=len(sent) + 1, deadline_s=5.0)  # all there is
    assert sorted(r.value for r in landed) == sorted(r.value for r in sent)  # each once: the retry was deduplicated
    by_key: dict[bytes, list[bytes]] = {}
    for r in sorted(landed, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key, []).append(r.value)
    for key, values in by_key.items():  # one agent's records in the order they were sent
        assert values == [r.value for r in sent if r.key == key]
