"""Coalesced per-partition batches: order kept per partition, one outcome per batch, every request answered once.

aiokafka's producer is replaced by a double with the same batch API (``create_batch`` / ``send_batch``)
whose acknowledgements the test gives or withholds; the partitioner is checked against aiokafka's own.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition

from ingest.batching import PartitionBatcher, _Accumulator, fill_batch
from ingest.delivery import PUBLISHED, SPOOLED, Delivery
from ingest.metrics import IngestMetrics
from ingest.partitioner import KeyPartitioner
from ingest.records import OutboundRecord
from ingest.spool import Spool
from schemas import partitioning

PARTITIONS = 4


def record(i: int, agent: int | None = None) -> OutboundRecord:
    key = str(1000 + (i % 10 if agent is None else agent)).encode()
    return OutboundRecord("raw", key, b"v%d" % i, [("onduty-dedup-id", b"%032d" % i)], 1_700_000_000_000 + i, i)


class FakeBatch:
    def __init__(self, max_records: int) -> None:
        self.max_records, self.records, self.closed = max_records, [], False

    def append(self, *, key, value, timestamp, headers):
        if self.closed or (self.records and len(self.records) >= self.max_records):  # the first always fits
            return None
        self.records.append((key, value, timestamp, headers))
        return object()

    def close(self) -> None:
        self.closed = True


class FakeCluster:
    def __init__(self) -> None:
        self.partitions = PARTITIONS
        self.listeners = []
        self.brokers = 1  # partition p is led by broker p % brokers

    def leader_for_partition(self, tp: TopicPartition) -> int:
        return tp.partition % self.brokers

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def updated(self, partitions: int) -> None:
        """A metadata update, as aiokafka reports it to listeners."""
        self.partitions = partitions
        for listener in self.listeners:
            listener(self)


class FakeProducer:
    """Keeps submitted batches in order; the test acknowledges or fails each with ``ack``/``fail``."""

    def __init__(self, max_records: int = 1000) -> None:
        self.client = type("Client", (), {"cluster": FakeCluster()})()
        self.max_records = max_records
        self.submitted: list[tuple[int, FakeBatch, asyncio.Future]] = []
        self.refuse: Exception | None = None
        self.gate: asyncio.Event | None = None  # when set: send_batch waits (a previous batch not drained yet)

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.max_records)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future:
        assert batch.closed, "a batch must be closed before it is submitted"
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse is not None:
            raise self.refuse
        ack = asyncio.get_running_loop().create_future()
        self.submitted.append((partition, batch, ack))
        return ack

    def values(self, partition: int) -> list[bytes]:
        return [value for p, batch, _ in self.submitted if p == partition for _, value, _, _ in batch.records]

    def ack_all(self) -> None:
        for _, _, ack in self.submitted:
            if not ack.done():
                ack.set_result(None)


def partition_of(r: OutboundRecord) -> int:
    return DefaultPartitioner()(r.key, list(range(PARTITIONS)), list(range(PARTITIONS)))


async def settle_all(producer: FakeProducer, tasks: list[asyncio.Task]) -> None:
    """Acknowledge every batch submitted until ``tasks`` are done."""
    while not all(task.done() for task in tasks):
        await asyncio.sleep(0)
        producer.ack_all()
    await asyncio.gather(*tasks)


async def settle_soon(producer: FakeProducer) -> None:
    """Acknowledge every batch once the requests of this loop iteration were submitted."""
    for _ in range(5):
        await asyncio.sleep(0)
    producer.ack_all()


# ----- partitioner -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 3, 8, 12])
def test_partitioner_agrees_with_aiokafka_default_partitioner(count, monkeypatch):
    monkeypatch.setattr(partitioning, "_HASHES_KEPT", 50)
    monkeypatch.setattr(partitioning, "_hashes", {})
    partitioner, partitions = KeyPartitioner(), list(range(count))
    for agent in range(200):  # more keys than remembered: forgetting must not change answers
        key = str(5_728_255_400_000_000 + agent * 7919).encode()
        assert partitioner.partition(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
        assert partitioner.partition(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_record_without_key_goes_to_some_partition():
    assert KeyPartitioner().partition(None, [0, 1, 2]) in {0, 1, 2}


# ----- batching ----------------------------------------------------------------------------------------------

async def test_concurrent_sends_share_one_batch_per_partition_in_arrival_order():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    records = [record(i) for i in range(60)]
    await asyncio.gather(*(batcher.send(r) for r in records), settle_soon(producer))

    assert len(producer.submitted) <= PARTITIONS  # 60 requests, one batch per partition
    for partition in range(PARTITIONS):
        expected = [r.value for r in records if partition_of(r) == partition]
        assert producer.values(partition) == expected  # the partition Kafka's default partitioner picks, in order
    [(key, value, timestamp, headers)] = [rec for _, b, _ in producer.submitted for rec in b.records
                                          if rec[1] == b"v7"]
    assert (key, timestamp, headers) == (records[7].key, records[7].timestamp_ms, records[7].headers)


async def test_records_arriving_while_a_batch_is_in_flight_form_the_next_batch_in_order():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    first = [asyncio.create_task(batcher.send(record(i, agent=1))) for i in range(5)]
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(batcher.send(record(i, agent=1))) for i in range(5, 12)]
    await asyncio.sleep(0.01)
    assert len(producer.submitted) == 1  # the next batch waits for the acknowledgement of the previous one
    await settle_all(producer, first + later)
    partition = partition_of(record(0, agent=1))
    assert producer.values(partition) == [b"v%d" % i for i in range(12)]
    assert [len(b.records) for _, b, _ in producer.submitted] == [5, 7]


def agent_on(partition: int) -> int:
    """An agent whose records go to ``partition``."""
    return next(a for a in range(100) if partition_of(record(0, agent=a)) == partition)


async def test_lanes_ready_while_their_broker_has_batches_in_flight_go_together_once_it_answered():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    first = [asyncio.create_task(batcher.send(record(i, agent=agent_on(0)))) for i in range(3)]
    await asyncio.sleep(0.01)
    assert [p for p, _, _ in producer.submitted] == [0]
    later = [asyncio.create_task(batcher.send(record(i, agent=agent_on(p))))
             for i, p in enumerate([1, 2, 0, 3, 1], start=3)]
    await asyncio.sleep(0.01)
    assert len(producer.submitted) == 1  # one broker, one request at a time: the other lanes wait for the round

    producer.submitted[0][2].set_result(None)
    await asyncio.sleep(0.01)
    assert all(task.done() for task in first) and not any(task.done() for task in later)
    assert sorted(p for p, _, _ in producer.submitted[1:]) == [0, 1, 2, 3]  # the next round: every lane at once
    assert [len(b.records) for p, b, _ in producer.submitted[1:] if p == 1] == [2]
    await settle_all(producer, later)
    assert producer.values(1) == [b"v3", b"v7"]
    assert producer.values(0) == [b"v0", b"v1", b"v2", b"v5"]


async def test_a_broker_with_batches_in_flight_does_not_hold_back_the_lanes_of_another():
    producer = FakeProducer()
    producer.client.cluster.brokers = 2
    batcher = PartitionBatcher(producer, deadline_s=5)
    first = asyncio.create_task(batcher.send(record(0, agent=agent_on(0))))  # broker 0
    await asyncio.sleep(0.01)
    other = asyncio.create_task(batcher.send(record(1, agent=agent_on(1))))  # broker 1: not waiting for broker 0
    same = asyncio.create_task(batcher.send(record(2, agent=agent_on(2))))  # broker 0: waits for its round
    await asyncio.sleep(0.01)
    assert [p for p, _, _ in producer.submitted] == [0, 1]
    await settle_all(producer, [first, other, same])
    assert [p for p, _, _ in producer.submitted] == [0, 1, 2]


async def test_a_failed_round_releases_the_lanes_that_waited_for_it():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    first = asyncio.create_task(batcher.send(record(0, agent=agent_on(0))))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(batcher.send(record(1, agent=agent_on(1))))
    await asyncio.sleep(0.01)
    producer.submitted[0][2].set_exception(KafkaConnectionError("broker gone"))
    await settle_all(producer, [waiting])
    with pytest.raises(KafkaConnectionError):
        await first
    assert producer.values(1) == [b"v1"]


async def test_a_batch_waiting_for_the_accumulator_is_followed_in_order():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    producer.gate = asyncio.Event()  # send_batch blocks: the previous batch is not drained yet
    first = [asyncio.create_task(batcher.send(record(i, agent=1))) for i in range(3)]
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(batcher.send(record(i, agent=1))) for i in range(3, 6)]
    producer.gate.set()
    await settle_all(producer, first + later)
    assert producer.values(partition_of(record(0, agent=1))) == [b"v%d" % i for i in range(6)]


async def test_a_full_batch_continues_in_the_next_one_in_order():
    producer = FakeProducer(max_records=3)
    batcher = PartitionBatcher(producer, deadline_s=5)
    records = [record(i, agent=2) for i in range(10)]
    await settle_all(producer, [asyncio.create_task(batcher.send(r)) for r in records])
    assert [len(b.records) for _, b, _ in producer.submitted] == [3, 3, 3, 1]
    assert producer.values(partition_of(records[0])) == [r.value for r in records]


async def test_a_partition_count_change_in_the_metadata_moves_keys_as_kafkas_partitioner_does():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    records = [record(i) for i in range(10)]
    await asyncio.gather(*(batcher.send(r) for r in records), settle_soon(producer))
    producer.client.cluster.updated(12)
    producer.submitted.clear()
    await asyncio.gather(*(batcher.send(r) for r in records), settle_soon(producer))
    for r in records:
        partition = DefaultPartitioner()(r.key, list(range(12)), list(range(12)))
        assert r.value in producer.values(partition)


async def test_more_keys_than_the_batcher_remembers_still_reach_their_partitions(monkeypatch):
    monkeypatch.setattr("ingest.batching._KEYS_KEPT", 3)
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    for _ in range(2):  # the second time, keys are forgotten and remembered again on the way
        producer.submitted.clear()
        records = [record(i, agent=i) for i in range(10)]
        await asyncio.gather(*(batcher.send(r) for r in records), settle_soon(producer))
        for r in records:
            assert r.value in producer.values(partition_of(r))


async def test_a_failed_batch_fails_every_request_in_it_and_only_those():
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, deadline_s=5)
    records = [record(i) for i in range(40)]
    tasks = [asyncio.create_task(batcher.send(r)) for r in records]
    for _ in range(5):
        await asyncio.sleep(0)
    failed_partition, _, failed_ack = producer.submitted[0]
    failed_ack.set_exception(KafkaConnectionError("broker gone"))
    producer.ack_all()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for r, outcome in zip(records, outcomes):
        if partition_of(r) == failed_partition:
            assert isinstance(outcome, KafkaConnectionError)
        else:
            assert outcome is None
    errors = [o for o in outcomes if o is not None]
    assert len({id(e) for e in errors}) == len(errors)  # a copy each: no traceback piling up on one object


async def test_a_batch_the_producer_refuses_fails_its_requests():
    producer = FakeProducer()
    producer.refuse = KafkaTimeoutError()
    batcher = PartitionBatcher(producer, deadline_s=5)
    outcomes = await asyncio.gather(*(batcher.send(record(i)) for i in range(8)), return_exceptions=True)
    assert all(isinstance(o, KafkaTimeoutError) for o in outcomes)
    producer.refuse = None
    await asyncio.gather(batcher.send(record(8)), settle_soon(producer))  # the lanes still work afterwards


async def test_no_acknowledgement_within_the_deadline_is_a_timeout_and_unbatched_records_are_not_sent():
    producer = FakeProducer()
    producer.gate = asyncio.Event()  # the accumulator never takes the first batch
    batcher = PartitionBatcher(producer, deadline_s=0.05)
    first = asyncio.create_task(batcher.send(record(0, agent=3)))
    await asyncio.sleep(0)
    second = asyncio.create_task(batcher.send(record(1, agent=3)))  # waits in the lane behind the first
    outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 2)
    assert all(isinstance(o, TimeoutError) for o in outcomes)
    producer.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert producer.values(partition_of(record(0, agent=3))) == [b"v0"]  # the second one went to the spool only



async def test_the_deadline_holds_while_the_topics_partitions_are_not_known_yet():
    producer = FakeProducer()
    producer.client.cluster.partitions_for_topic = lambda topic: None  # aiokafka started without its metadata
    metadata = asyncio.Event()

    async def partitions_for(topic: str) -> set[int]:  # aiokafka waits up to its request timeout (10 s)
        await metadata.wait()
        return set(range(PARTITIONS))

    producer.partitions_for = partitions_for
    batcher = PartitionBatcher(producer, deadline_s=0.05)
    with pytest.raises(TimeoutError, match="publish deadline"):
        await asyncio.wait_for(batcher.send(record(0, agent=3)), 2)
    batcher = PartitionBatcher(producer, deadline_s=5)
    waiting = [asyncio.create_task(batcher.send(record(i, agent=3))) for i in (1, 2)]
    await asyncio.sleep(0)
    metadata.set()
    producer.client.cluster.partitions_for_topic = lambda topic: set(range(PARTITIONS))
    later = asyncio.create_task(batcher.send(record(3, agent=3)))  # arrives before the waiting ones resumed
    await settle_all(producer, [*waiting, later])
    assert producer.values(partition_of(record(1, agent=3))) == [b"v1", b"v2", b"v3"]  # arrival order

# ----- through Delivery: each request kept exactly once --------------------------------------------------------

async def test_every_request_is_kept_exactly_once_when_one_batch_fails(tmp_path: Path):
    producer = FakeProducer()
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    delivery = Delivery(PartitionBatcher(producer, deadline_s=5), spool, IngestMetrics(), deadline_s=5)
    delivery.kafka_up = True
    records = [record(i) for i in range(40)]
    tasks = [asyncio.create_task(delivery.keep(r)) for r in records]
    for _ in range(5):
        await asyncio.sleep(0)
    failed_partition, _, failed_ack = producer.submitted[0]
    failed_ack.set_exception(KafkaConnectionError("broker gone"))
    producer.ack_all()
    outcomes = await asyncio.gather(*tasks)

    published = [r for r, o in zip(records, outcomes) if o == PUBLISHED]
    spooled = [r for r, o in zip(records, outcomes) if o == SPOOLED]
    assert spooled == [r for r in records if partition_of(r) == failed_partition]  # arrival order in the spool
    assert len(published) + len(spooled) == len(records)
    acked = {v for p, _, ack in producer.submitted if ack.exception() is None for v in producer.values(p)}
    assert {r.value for r in published} == acked
    on_disk, _ = spool.read_batch(100)
    assert on_disk == spooled
    await spool.close()


# ----- aiokafka internals ------------------------------------------------------------------------------------

async def test_a_closed_batch_goes_straight_into_aiokafkas_accumulator_unless_send_batch_would_wait():
    """What ``_Accumulator`` relies on in the installed aiokafka (its producer is never started here)."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", acks="all", enable_idempotence=True)
    try:
        accumulator, tp = _Accumulator.of(producer), TopicPartition("raw", 1)
        assert accumulator is not None, "aiokafka's accumulator internals changed: batches go through send_batch()"
        batch = producer.create_batch()
        assert batch.append(key=b"1001", value=b"v", timestamp=1_700_000_000_000, headers=[]) is not None
        batch.close()
        ack = accumulator.queue(batch, tp)

        [queued] = producer._message_accumulator._batches[tp]  # what the sender drains, with its record count
        assert queued.future is ack and queued.record_count == 1 and not ack.done()
        assert producer._message_accumulator.waiter().done()  # the sender is woken, as send_batch() would
        assert accumulator.queue(producer.create_batch(), tp) is None  # one waits for the sender: send_batch()
        queued.done(base_offset=0)  # the broker's acknowledgement, as the sender gives it
        assert ack.done() and ack.exception() is None

        producer._message_accumulator.fail_all(KafkaConnectionError("sender failed"))
        assert accumulator.queue(producer.create_batch(), TopicPartition("raw", 2)) is None
        producer._message_accumulator._exception = None
        producer._message_accumulator._closed = True
        assert accumulator.queue(producer.create_batch(), TopicPartition("raw", 2)) is None
    finally:
        await producer.stop()


def test_a_producer_without_aiokafkas_internals_goes_through_send_batch():
    assert _Accumulator.of(FakeProducer()) is None


@pytest.mark.parametrize("batch_size", [16384, 700])  # every record fits / the batch fills up
def test_a_batch_filled_through_the_c_builder_is_the_batch_append_builds(batch_size):
    waiting = [(record(i), None) for i in range(8)]
    waiting[3] = (msgspec.structs.replace(waiting[3][0], value=b"x" * 500), None)
    direct, through_append = BatchBuilder(batch_size, 0), BatchBuilder(batch_size, 0)
    count = fill_batch(direct, waiting)
    appended = [through_append.append(key=r.key, value=r.value, timestamp=r.timestamp_ms, headers=r.headers)
                for r, _ in waiting]
    assert count == sum(1 for metadata in itertools.takewhile(lambda m: m is not None, appended))
    assert (count == 8) is (batch_size == 16384)
    assert direct.record_count() == through_append.record_count() == count
    for batch in (direct, through_append):
        batch._set_producer_state(producer_id=7, producer_epoch=0, base_sequence=42)
    assert direct._build() == through_append._build()


def test_a_batch_without_aiokafkas_builder_is_filled_through_append():
    batch = FakeBatch(max_records=2)
    assert fill_batch(batch, [(record(i), None) for i in range(3)]) == 2
    assert [r[1] for r in batch.records] == [b"v0", b"v1"]


async def test_a_producer_start_cancelled_by_a_stopping_service_is_closed(monkeypatch):
    from ingest import publisher as publisher_module

    stopped = []

    class SlowProducer:  # aiokafka's producer while the broker does not answer yet
        def __init__(self, **options) -> None:
            pass

        async def start(self) -> None:
            await asyncio.sleep(3600)

        async def stop(self) -> None:
            stopped.append(True)

    monkeypatch.setattr(publisher_module, "AIOKafkaProducer", SlowProducer)
    kafka = publisher_module.KafkaPublisher("127.0.0.1:1")
    starting = asyncio.ensure_future(kafka.start())
    await asyncio.sleep(0.01)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert stopped == [True] and not kafka.started
