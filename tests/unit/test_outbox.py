"""The Outbox and the pending changelog without a broker: where records go, when changelog records are sent,
what a table sees, how an offset commit waits for the batches in flight.

The producer here only records what it is handed (the real aiokafka ``BatchBuilder`` is used, and read back with
aiokafka's own record parser); the whole path against Kafka is covered by the processor integration tests.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from faust.transport.consumer import Consumer as FaustConsumer

from processors.changelog import pending_changelog
from processors.internal_codec import encode_internal
from processors.faust_io import BatchesInFlight
from schemas.partitioning import default_partition
from processors.outbox import Deliveries, Outbox

PARTITIONS = 8


class Value(msgspec.Struct):
    n: int


class RecordingProducer:
    """What the Outbox asks of aiokafka's producer: batches, submitted per topic partition, acknowledged later."""

    def __init__(self, batch_size: int = 256 * 1024) -> None:
        self.batch_size = batch_size
        self.submitted: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.unacknowledged: list[asyncio.Future] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future:
        batch = MemoryRecords(bytes(builder._build())).next_batch()
        self.submitted.append((topic, partition, [(r.key, r.value) for r in batch]))
        future = asyncio.get_running_loop().create_future()
        self.unacknowledged.append(future)
        return future

    async def acknowledge_all(self) -> None:
        while True:
            await asyncio.sleep(0)
            pending = [f for f in self.unacknowledged if not f.done()]
            if not pending:
                return
            for future in pending:
                future.set_result(None)


class FakeTable:
    """The parts of a ``StructTable`` the Outbox uses: its data, changelog topic and key partitioning."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[bytes, object] = {}
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: f"app-{name}-changelog")

    def partition_for_key(self, key: bytes) -> int:
        return default_partition(key, PARTITIONS)


class FakeApp:
    """What the Outbox, the pending changelog and ``BatchesInFlight`` use of a ``faust.App``."""

    def __init__(self, producer: RecordingProducer) -> None:
        self.producer = SimpleNamespace(_ensure_producer=lambda: producer)
        signal = SimpleNamespace(connect=lambda handler: handler)
        self.on_partitions_revoked = self.on_partitions_assigned = self.on_before_shutdown = signal


def outbox_with(producer: RecordingProducer, app: FakeApp | None = None) -> Outbox:
    return Outbox(app or FakeApp(producer))  # type: ignore[arg-type]


async def flush(app: FakeApp, producer: RecordingProducer) -> int:
    """What a commit does with the pending changelog: take a cut and write it (acknowledged here)."""
    changelog = pending_changelog(app)  # type: ignore[arg-type]
    flushing = asyncio.create_task(changelog.write(producer, changelog.cut()))  # type: ignore[arg-type]
    while not flushing.done():
        await producer.acknowledge_all()
    return await flushing


async def deliver(outbox: Outbox, producer: RecordingProducer) -> None:
    """Submit the outbox's records and acknowledge them all."""
    acknowledgements = await outbox.submit()
    await producer.acknowledge_all()
    await asyncio.gather(*acknowledgements)


def test_murmur2_equals_aiokafkas_for_every_length_and_byte():
    import random

    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    from schemas.partitioning import murmur2

    rng = random.Random(7)
    for length in range(0, 40):
        for _ in range(25):
            data = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(data) == aiokafka_murmur2(data), data


def test_default_partition_is_the_default_partitioners_choice():
    partitioner = DefaultPartitioner()
    for key in [b"1", b"42", b"6100000000000000", "agent-é".encode(), b"cc#agent", b""]:
        assert default_partition(key, PARTITIONS) == partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS)))


async def test_records_go_to_their_keys_partitions_in_order_one_batch_per_partition():
    producer = RecordingProducer()
    outbox = outbox_with(producer)
    sent = [(f"agent-{i % 5}".encode(), f"v{i}".encode()) for i in range(40)]
    for key, value in sent:
        outbox.send("out", key, value)
    outbox.send("out", b"marker", b"m", partition=3)
    await deliver(outbox, producer)

    by_partition = {partition: records for topic, partition, records in producer.submitted}
    assert len(producer.submitted) == len(by_partition)  # one batch per topic partition
    for key, value in sent:
        assert (key, value) in by_partition[default_partition(key, PARTITIONS)]
    for records in by_partition.values():  # arrival order kept within a partition
        assert records == [r for r in [*sent, (b"marker", b"m")] if r in records]
    assert (b"marker", b"m") in by_partition[3]


async def test_deliver_sends_the_records_and_leaves_the_changelog_to_the_next_flush():
    producer = RecordingProducer()
    app = FakeApp(producer)
    outbox = outbox_with(producer, app)
    table = FakeTable("state")
    outbox.put(table, "a", Value(1))
    outbox.send("out", b"a", b"record")
    await deliver(outbox, producer)
    assert [topic for topic, _, _ in producer.submitted] == ["out"]
    assert await flush(app, producer) == 1
    assert [topic for topic, _, _ in producer.submitted] == ["out", "app-state-changelog"]
    assert await flush(app, producer) == 0  # flushed once


async def test_a_table_sees_its_writes_at_once_and_its_changelog_gets_the_latest_value_per_key():
    producer = RecordingProducer()
    app = FakeApp(producer)
    table = FakeTable("state")
    table.data[b"gone"] = Value(0)
    first, second = outbox_with(producer, app), outbox_with(producer, app)  # two batches before a commit
    first.put(table, "a", Value(1))
    first.put(table, "b", Value(3))
    second.put(table, "a", Value(2))
    second.delete(table, "gone")
    second.delete(table, "never-there")  # nothing to delete: no tombstone
    assert table.data == {b"a": Value(2), b"b": Value(3)}
    assert await flush(app, producer) == 3

    changelog = {key: value for _, _, records in producer.submitted for key, value in records}
    assert changelog == {b"a": encode_internal(Value(2)), b"b": encode_internal(Value(3)), b"gone": None}
    partitions = {key: partition for _, partition, records in producer.submitted for key, _ in records}
    assert partitions == {key: default_partition(key, PARTITIONS) for key in changelog}


async def test_a_cut_holds_the_values_as_of_now_and_later_writes_go_to_the_next_one():
    producer = RecordingProducer()
    app = FakeApp(producer)
    table = FakeTable("state")
    outbox_with(producer, app).put(table, "a", Value(1))
    cut = pending_changelog(app).cut()  # type: ignore[arg-type]
    value = table.data[b"a"]
    value.n = 5  # a later batch changes the value in place and writes it again
    outbox_with(producer, app).put(table, "a", value)
    assert {key: v for records in cut.values() for key, v, _ in records} == {b"a": encode_internal(Value(1))}
    assert await flush(app, producer) == 1
    assert {key: v for _, _, records in producer.submitted for key, v in records} == {b"a": encode_internal(Value(5))}


async def test_a_failed_changelog_write_poisons_the_changelog():
    producer = RecordingProducer()
    app = FakeApp(producer)
    outbox_with(producer, app).put(FakeTable("state"), "a", Value(1))
    changelog = pending_changelog(app)  # type: ignore[arg-type]
    flushing = asyncio.create_task(changelog.write(producer, changelog.cut()))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    for future in producer.unacknowledged:
        future.set_exception(RuntimeError("broker gone"))
    with pytest.raises(RuntimeError, match="broker gone"):
        await flushing
    outbox_with(producer, app).put(FakeTable("state"), "b", Value(1))
    with pytest.raises(RuntimeError, match="not written after a failed batch"):
        pending_changelog(app).cut()  # type: ignore[arg-type]


async def test_a_commit_waits_for_the_batches_in_flight_and_holds_back_new_ones():
    in_flight = BatchesInFlight(FakeApp(RecordingProducer()), timeout_s=5)  # type: ignore[arg-type]
    steps: list[str] = []
    release_first = asyncio.Event()

    async def batch(name: str, release: asyncio.Event | None = None) -> None:
        assert await in_flight.enter()
        try:
            steps.append(f"{name} starts")
            if release is not None:
                await release.wait()
            steps.append(f"{name} ends")
        finally:
            in_flight.leave()

    async def commit() -> None:
        async with in_flight.exclusive():
            steps.append("commit")

    first = asyncio.create_task(batch("first", release_first))
    await asyncio.sleep(0)
    committing = asyncio.create_task(commit())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(batch("second"))
    await asyncio.sleep(0.01)
    assert steps == ["first starts"]  # the commit waits for the first batch, the second waits for the commit
    release_first.set()
    await asyncio.gather(first, committing, second)
    assert steps == ["first starts", "first ends", "commit", "second starts", "second ends"]


async def test_no_batch_starts_during_a_rebalance_or_once_the_worker_stops():
    in_flight = BatchesInFlight(FakeApp(RecordingProducer()), timeout_s=5)  # type: ignore[arg-type]
    in_flight.rebalancing = True
    assert not await in_flight.enter()
    in_flight.rebalancing = False
    assert await in_flight.enter()
    in_flight.leave()
    in_flight.stopping = True
    assert not await in_flight.enter()


async def test_a_commit_gives_up_when_a_batch_stays_in_flight_past_the_timeout():
    in_flight = BatchesInFlight(FakeApp(RecordingProducer()), timeout_s=0.05)  # type: ignore[arg-type]
    assert await in_flight.enter()
    with pytest.raises(TimeoutError):
        async with in_flight.exclusive():
            pass


class CommittingConsumer:
    """Faust's own ``commit`` and ``maybe_wait_for_commit_to_finish`` (one commit at a time, a second caller
    waits for it and returns), around a ``force_commit`` that records each commit and waits for ``release``."""

    commit = FaustConsumer.commit
    maybe_wait_for_commit_to_finish = FaustConsumer.maybe_wait_for_commit_to_finish

    def __init__(self) -> None:
        self.app = SimpleNamespace(client_only=False)
        self.loop = asyncio.get_running_loop()
        self._commit_fut: asyncio.Future | None = None
        self.commits: list[str] = []
        self.release = asyncio.Event()

    async def force_commit(self, topics: object = None, start_new_transaction: bool = True) -> bool:
        self.commits.append(f"commit {len(self.commits) + 1} starts")
        await self.release.wait()
        return True


async def test_a_revocation_commits_itself_after_a_commit_under_way():
    """A commit under way took its cut before the last batches: the revocation must not settle for it."""
    app = FakeApp(RecordingProducer())
    app.consumer = consumer = CommittingConsumer()  # type: ignore[attr-defined]
    in_flight = BatchesInFlight(app, timeout_s=5)  # type: ignore[arg-type]
    timer_commit = asyncio.create_task(consumer.commit())
    await asyncio.sleep(0)
    revoked = asyncio.create_task(in_flight._on_partitions_revoked(app, set()))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert consumer.commits == ["commit 1 starts"]
    consumer.release.set()
    await asyncio.gather(timer_commit, revoked)
    assert consumer.commits == ["commit 1 starts", "commit 2 starts"]
    assert in_flight.rebalancing


async def test_outboxes_are_submitted_in_dispatch_order_and_each_resolves_on_its_own_acknowledgements():
    producer = RecordingProducer()
    app = FakeApp(producer)
    deliveries = Deliveries()
    outboxes = [outbox_with(producer, app) for _ in range(3)]
    for n, outbox in enumerate(outboxes):
        outbox.send("out", b"agent", f"v{n}".encode(), partition=0)
    delivered = [deliveries.dispatch(outbox) for outbox in outboxes]
    await asyncio.sleep(0.01)
    assert [records for _, _, records in producer.submitted] == [[(b"agent", b"v0")], [(b"agent", b"v1")],
                                                                 [(b"agent", b"v2")]]
    assert not any(future.done() for future in delivered)  # nothing acknowledged yet
    producer.unacknowledged[1].set_exception(RuntimeError("not enough replicas"))
    producer.unacknowledged[0].set_result(None)
    await asyncio.sleep(0.01)
    assert delivered[0].result() is None
    assert isinstance(delivered[1].exception(), RuntimeError)
    assert not delivered[2].done()


async def test_a_poisoned_changelog_refuses_to_flush():
    producer = RecordingProducer()
    app = FakeApp(producer)
    outbox_with(producer, app).put(FakeTable("state"), "a", Value(1))
    pending_changelog(app).poison(RuntimeError("records of a batch were not delivered"))
    with pytest.raises(RuntimeError, match="not written after a failed batch"):
        pending_changelog(app).cut()  # type: ignore[arg-type]
    assert producer.submitted == []


async def test_a_record_larger_than_a_batch_goes_alone_in_one_of_its_own():
    producer = RecordingProducer(batch_size=1024)
    outbox = outbox_with(producer)
    big = b"x" * 4096
    outbox.send("out", b"k", b"small", partition=0)
    outbox.send("out", b"k", big, partition=0)
    outbox.send("out", b"k", b"after", partition=0)
    await deliver(outbox, producer)
    assert [records for _, _, records in producer.submitted] == [
        [(b"k", b"small")], [(b"k", big)], [(b"k", b"after")]]


async def test_a_record_without_key_or_partition_is_refused():
    outbox = outbox_with(RecordingProducer())
    outbox.send("out", None, b"v")
    with pytest.raises(ValueError, match="neither a key nor a partition"):
        await outbox.submit()


def test_ack_batch_leaves_faust_with_the_same_offsets_to_commit_as_acking_one_by_one():
    from collections import defaultdict

    from faust.transport.consumer import Consumer as FaustConsumer
    from faust.types import TP

    from processors.consumer import BatchingConsumer

    def consumer_state(committed: dict) -> SimpleNamespace:
        return SimpleNamespace(
            app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == "raw")),
            _committed_offset=defaultdict(lambda: None, committed), _acked_index=defaultdict(set),
            _acked=defaultdict(list), _n_acked=0, _waiting_for_ack=None, _unacked_messages=set())

    class Record:  # what acknowledging reads of a ``faust.types.Message``; hashable like one
        def __init__(self, topic: str, partition: int, offset: int) -> None:
            self.topic, self.tp, self.offset, self.acked = topic, TP(topic, partition), offset, False

    def messages() -> list[Record]:
        made = [Record(topic, partition, offset)
                for topic in ("raw", "no-acks") for partition in (0, 1) for offset in range(5, 12)]
        return made + [made[3]]  # acknowledged twice

    committed = {TP("raw", 0): 8}  # offsets below the committed one are not acknowledged again
    one_by_one, batched = consumer_state(committed), consumer_state(committed)
    for message in messages():
        FaustConsumer.ack(one_by_one, message)  # type: ignore[arg-type]
    batch = messages()
    BatchingConsumer.ack_batch(batched, batch)  # type: ignore[arg-type]
    assert dict(batched._acked) == dict(one_by_one._acked)
    assert dict(batched._acked_index) == dict(one_by_one._acked_index)
    assert batched._n_acked == one_by_one._n_acked
    assert all(message.acked for message in batch)
