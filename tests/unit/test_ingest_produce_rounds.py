"""Direct produce rounds (``ingest.produce_rounds``) on aiokafka's own producer, its connection replaced.

The producer is aiokafka's, never started: the tests give it a producer id and a connection that records
what is written and answers as the test says. What is checked is what the idempotent producer's guarantees
rest on: sequence numbers taken as aiokafka's accumulator takes them, the broker and partitions kept from
aiokafka's sender while a round is in flight, and a batch to retry handed back to the accumulator with its
sequence numbers. That the records land on a real broker, also across a broken connection, is checked in
``tests/integration/test_ingest_kafka.py``.
"""

from __future__ import annotations

import asyncio
import collections
import struct

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import ConnectionGroup
from aiokafka.conn import CloseReason
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError
from aiokafka.protocol.produce import ProduceResponse_v8
from aiokafka.structs import TopicPartition

from ingest.produce_rounds import DirectRounds

NODE = 0
PRODUCER_ID = 4711
TP1, TP2 = TopicPartition("raw", 1), TopicPartition("raw", 2)


class FakeConnection:
    """Records the produce requests written; each waits for the test's ``answer`` or ``break_``."""

    def __init__(self) -> None:
        self._requests: collections.deque = collections.deque()
        self.written: list[object] = []
        self.closed_because: list[CloseReason] = []
        self.refuse: Exception | None = None

    def connected(self) -> bool:
        return not self.closed_because

    def send(self, request, expect_response=True):
        if self.refuse is not None:
            raise self.refuse
        self.written.append(request)
        future = asyncio.get_running_loop().create_future()
        self._requests.append((len(self.written), request, future))

        async def wait_for_it():  # what aiokafka returns: a coroutine around the future, with its timeout
            return await future

        return wait_for_it()

    def answer(self, errors: dict[TopicPartition, int]) -> None:
        _, _, future = self._requests.popleft()
        topics = collections.defaultdict(list)
        for tp, code in errors.items():
            topics[tp.topic].append((tp.partition, code, 100 if code == 0 else -1, -1, 0, [], None))
        future.set_result(ProduceResponse_v8(topics=list(topics.items()), throttle_time_ms=0))

    def close(self, reason=None, exc=None) -> None:
        self.closed_because.append(reason)
        while self._requests:
            _, _, future = self._requests.popleft()
            future.set_exception(KafkaConnectionError("connection closed"))


@pytest.fixture
async def producer():
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", acks="all", enable_idempotence=True,
                                request_timeout_ms=200, retry_backoff_ms=10)
    producer._txn_manager.set_pid_and_epoch(PRODUCER_ID, 0)
    producer.client._conns[(NODE, ConnectionGroup.DEFAULT)] = FakeConnection()
    yield producer
    del producer.client._conns[(NODE, ConnectionGroup.DEFAULT)]
    producer._message_accumulator._pending_batches.clear()  # the test left them unanswered
    await producer.stop()


def connection_of(producer) -> FakeConnection:
    return producer.client._conns[(NODE, ConnectionGroup.DEFAULT)]


def batch_of(producer, count: int):
    batch = producer.create_batch()
    for i in range(count):
        assert batch.append(key=b"1001", value=b"v%d" % i, timestamp=1_700_000_000_000 + i, headers=[]) is not None
    batch.close()
    return batch


def sent_batches(request) -> dict[TopicPartition, bytes]:
    return {TopicPartition(topic, partition): data for topic, partitions in request.topics
            for partition, data in partitions}


async def next_iterations(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_round_takes_sequence_numbers_as_aiokafkas_accumulator_and_keeps_the_sender_away(producer):
    rounds = DirectRounds.of(producer)
    assert rounds is not None, "aiokafka's producer internals changed: rounds go through its sender"
    assert rounds.can_send(NODE, [TP1, TP2])
    first, second = rounds.send(NODE, {TP1: batch_of(producer, 3), TP2: batch_of(producer, 2)})

    [request] = connection_of(producer).written  # one produce request for the round, written at once
    assert set(sent_batches(request)) == {TP1, TP2}
    txn = producer._txn_manager
    assert (txn.sequence_number(TP1), txn.sequence_number(TP2)) == (3, 2)
    assert NODE in producer._sender._in_flight and {TP1, TP2} <= producer._sender._muted_partitions
    assert not rounds.can_send(NODE, [TP1])  # one request at a time per broker, as aiokafka's sender does
    assert len(producer._message_accumulator._pending_batches) == 2  # flush() and stop() wait for them

    connection_of(producer).answer({TP1: 0, TP2: 0})
    await next_iterations()
    assert first.done() and second.done() and first.result().offset == 100
    assert NODE not in producer._sender._in_flight and not producer._sender._muted_partitions
    assert not producer._message_accumulator._pending_batches
    assert rounds.can_send(NODE, [TP1])

    rounds.send(NODE, {TP1: batch_of(producer, 1)})
    later = sent_batches(connection_of(producer).written[-1])[TP1]
    assert base_sequence(later) == 3  # the next batch of the partition goes on from there


def base_sequence(data) -> int:
    """The base sequence of an encoded record batch (Kafka's v2 batch header, bytes 53 to 57)."""
    return int.from_bytes(bytes(data)[53:57], "big", signed=True)


async def test_a_batch_to_retry_goes_back_to_the_accumulator_with_its_sequence_numbers_after_the_backoff(producer):
    rounds = DirectRounds.of(producer)
    retried, refused = rounds.send(NODE, {TP1: batch_of(producer, 2), TP2: batch_of(producer, 1)})
    connection_of(producer).answer({TP1: NotLeaderForPartitionError.errno, TP2: MessageSizeTooLargeError.errno})
    await next_iterations()
    assert isinstance(refused.exception(), MessageSizeTooLargeError)  # refused for good: fails at once
    assert not retried.done()
    assert NODE in producer._sender._in_flight  # kept from the sender during the backoff, as aiokafka does
    assert not producer._message_accumulator._batches.get(TP1)

    await asyncio.sleep(0.05)
    [requeued] = producer._message_accumulator._batches[TP1]
    assert requeued.future is retried and requeued.retry_count == 1  # the sender keeps its sequence numbers
    assert NODE not in producer._sender._in_flight and producer._message_accumulator.waiter().done()
    assert not rounds.can_send(NODE, [TP1])  # the retry goes first
    assert producer._txn_manager.sequence_number(TP1) == 2  # taken once, not again for the retry


async def test_no_response_within_the_request_timeout_closes_the_connection_and_retries(producer):
    rounds = DirectRounds.of(producer)
    [ack] = rounds.send(NODE, {TP1: batch_of(producer, 1)})
    await asyncio.sleep(0.3)  # the request timeout is 200 ms
    assert connection_of(producer).closed_because == [CloseReason.CONNECTION_TIMEOUT]
    assert not ack.done()
    [requeued] = producer._message_accumulator._batches[TP1]
    assert requeued.future is ack


async def test_a_connection_broken_while_writing_retries_the_round(producer):
    rounds = DirectRounds.of(producer)
    connection_of(producer).refuse = KafkaConnectionError("broken pipe")
    [ack] = rounds.send(NODE, {TP1: batch_of(producer, 1)})
    await asyncio.sleep(0.05)
    [requeued] = producer._message_accumulator._batches[TP1]
    assert requeued.future is ack and not ack.done()
    assert NODE not in producer._sender._in_flight


async def test_a_round_waits_for_what_aiokafka_holds_and_for_a_usable_connection(producer):
    rounds = DirectRounds.of(producer)
    producer._sender._in_flight.add(NODE)  # aiokafka's sender has a request on the way to the broker
    assert not rounds.can_send(NODE, [TP1])
    producer._sender._in_flight.discard(NODE)
    assert not rounds.can_send(-1, [TP1]) and not rounds.can_send(None, [TP1])  # leader unknown
    assert not rounds.can_send(1, [TP1])  # no connection to that broker yet: aiokafka's sender connects
    connection_of(producer).closed_because.append(CloseReason.CONNECTION_BROKEN)
    assert not rounds.can_send(NODE, [TP1])


async def test_a_round_waits_for_partitions_on_their_way_in_a_request_of_the_sender(producer):
    rounds = DirectRounds.of(producer)
    producer._sender._muted_partitions.add(TP1)  # e.g. a retry to the partition's former leader
    assert not rounds.can_send(NODE, [TP2, TP1]) and rounds.can_send(NODE, [TP2])


async def test_a_bug_while_writing_fails_the_rounds_batches_and_releases_the_broker(producer):
    rounds = DirectRounds.of(producer)
    connection_of(producer).refuse = struct.error("required argument is not an integer")
    [ack] = rounds.send(NODE, {TP1: batch_of(producer, 1)})
    assert "produce request not sent" in str(ack.exception())
    assert NODE not in producer._sender._in_flight and not producer._sender._muted_partitions
    assert not producer._message_accumulator._batches.get(TP1)  # not retried: the same bug again


def test_a_producer_without_aiokafkas_internals_gets_no_direct_rounds():
    assert DirectRounds.of(object()) is None


@pytest.mark.parametrize("settings", [{"transactional_id": "t"}, {"acks": 0}])
async def test_a_transactional_producer_or_one_without_acknowledgements_gets_no_direct_rounds(settings):
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **settings)
    try:
        assert DirectRounds.of(producer) is None
    finally:
        await producer.stop()
