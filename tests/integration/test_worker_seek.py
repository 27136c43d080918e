"""The worker's seek back to the committed offsets, on a real broker: a stream partition with nothing committed
yet goes back to its beginning, so records fetched and dropped across a rebalance are fetched again.

aiokafka's ``seek_to_committed`` alone leaves such a partition where it is (checked here too): the e2e scaling
test once lost the first record of a partition that way.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from processors.consumer import _seek_and_wait, _seek_to_committed_or_beginning
from processors.seeks import Seek, SeekLedger
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

        seeks = SeekLedger()
        offsets = await asyncio.wait_for(
            _seek_to_committed_or_beginning(consumer, {uncommitted, committed}, seeks), 10)

        assert offsets[committed] == 2
        assert await consumer.position(uncommitted) == 0
        assert await consumer.position(committed) == 2
        assert await consumer.position(table_changelog) == 0  # not a stream partition: left to table recovery
        # the seeks are recorded, with the read offsets they imply (the beginning: anything)
        assert seeks.seeks_so_far == 2
        assert {tp: seeks.restart_from(tp) for tp in partitions} == {
            uncommitted: Seek(2, None), committed: Seek(1, 2), table_changelog: None}
    finally:
        await consumer.stop()


async def test_records_fetched_before_a_seek_are_told_apart_from_those_fetched_after(kafka_bootstrap, unique_name):
    topic = unique_name("stream")
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, b"%d" % i, key=b"k", partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        seeks = SeekLedger()
        await asyncio.wait_for(_seek_and_wait(consumer, {tp: 6}, seeks, 10), 10)
        fetched = await consumer.getmany(tp, timeout_ms=5000)
        fetched_after = seeks.seeks_so_far  # as the worker tags a fetch, in the step it returns
        assert [r.offset for r in fetched[tp]] == [6, 7, 8, 9]
        assert not seeks.fetched_before_a_seek(tp, fetched_after)
        assert seeks.restart_from(tp) == Seek(1, 6)

        await asyncio.wait_for(_seek_and_wait(consumer, {tp: 0}, seeks, 10), 10)  # a seek back, handled later
        assert seeks.fetched_before_a_seek(tp, fetched_after)  # the drain loop drops what was fetched from 6 on
        refetched = await consumer.getmany(tp, timeout_ms=5000)
        assert [r.offset for r in refetched[tp]] == list(range(10))
        assert not seeks.fetched_before_a_seek(tp, seeks.seeks_so_far)
        assert seeks.restart_from(tp) == Seek(2, None)
    finally:
        await consumer.stop()
