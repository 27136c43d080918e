"""The worker's seek back to the committed offsets, on a real broker: a stream partition with nothing committed
yet goes back to its beginning, so records fetched and dropped across a rebalance are fetched again.

aiokafka's ``seek_to_committed`` alone leaves such a partition where it is (checked here too): the e2e scaling
test once lost the first record of a partition that way.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from processors.consumer import _seek_to_committed_or_beginning
from tests.kafka_helpers import create_topics


async def test_stream_partitions_without_a_commit_go_back_to_their_beginning(kafka_bootstrap, unique_name):
    stream, changelog = unique_name("stream"), unique_name("changelog")
    await create_topics(kafka_bootstrap, [stream, changelog], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic in (stream, changelog):
            for partition in (0, 1):
                for i in range(5):
                    await producer.send_and_wait(topic, b"%d" % i, key=b"k", partition=partition)
    finally:
        await producer.stop()
    uncommitted, committed = TopicPartition(stream, 0), TopicPartition(stream, 1)
    table_changelog = TopicPartition(changelog, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=unique_name("group"),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [uncommitted, committed, table_changelog]
        consumer.assign(partitions)
        await consumer.commit({committed: OffsetAndMetadata(2, "")})
        for tp in partitions:  # everything fetched: the positions are at the end
            consumer.seek(tp, 5)
        assert [await consumer.position(tp) for tp in partitions] == [5, 5, 5]

        await consumer.seek_to_committed()  # aiokafka's own: nothing happens to the uncommitted partition
        assert await consumer.position(uncommitted) == 5

        # with records of another partition fetched and not consumed yet, as in a worker recovering its tables
        consumer.seek(table_changelog, 0)
        assert await consumer.getmany(uncommitted, timeout_ms=200) == {}
        await asyncio.sleep(0.5)  # the changelog partition's records are fetched meanwhile, and left unconsumed

        offsets = await asyncio.wait_for(_seek_to_committed_or_beginning(consumer, {uncommitted, committed}), 10)

        assert offsets[committed] == 2
        assert await consumer.position(uncommitted) == 0
        assert await consumer.position(committed) == 2
        assert await consumer.position(table_changelog) == 0  # not a stream partition: left to table recovery
    finally:
        await consumer.stop()
