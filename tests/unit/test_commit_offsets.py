"""The offset a worker commits never passes a record that no stage acknowledged, and never goes back.

Faust keeps the committed offset as the next offset to read, but its commit check let a gap of exactly one record
at that offset through (and checked nothing at offset 0): the record was skipped for good, silently. And the seek
that ends a recovery stored committed offsets read before commits made while it went on: the committed offset
went back behind acknowledged records and the partition's commits stopped (the e2e test saw both). The worker's
consumer (``processors.consumer.BatchingConsumer``) fixes both; these tests drive it on a built (not started)
worker app.
"""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from processors.app import create_app
from processors.settings import ProcessorSettings

RAW = "raw-events"
TP0 = TP(RAW, 0)


@pytest.fixture
def consumer():
    return create_app(ProcessorSettings(raw_topic=RAW, kafka_bootstrap="127.0.0.1:1")).consumer


def acknowledge(consumer, committed: int | None, offsets: list[int]) -> None:
    consumer._committed_offset[TP0] = committed
    consumer._acked[TP0] = list(offsets)
    consumer._acked_index[TP0] = set(offsets)


@pytest.mark.parametrize("committed, acked, expected", [
    (10, [10, 11, 12], 13),  # every record from the committed offset on
    (10, [10, 11, 13], 12),  # up to the first gap
    (10, [11, 12], None),  # record 10 missing: Faust committed 13
    (10, [12, 13], None),  # records 10 and 11 missing (Faust waited too)
    (0, [1, 2], None),  # record 0 missing: Faust checked nothing at offset 0
    (None, [5, 6], 7),  # nothing committed yet: from the lowest acknowledged offset, as Faust
])
def test_the_commit_stops_at_the_first_record_not_acknowledged(consumer, committed, acked, expected):
    acknowledge(consumer, committed, acked)
    assert consumer._new_offset(TP0) == expected


def test_offsets_without_a_record_from_the_committed_one_on_count_as_acknowledged(consumer):
    acknowledge(consumer, 10, [13, 14])
    # the drain loop read on from offset 9 and found the next record at 13: 10-12 hold none
    asyncio.run(consumer._add_gap(TP0, 10, 12))
    assert consumer._new_offset(TP0) == 15


def test_a_gap_that_does_not_reach_the_committed_offset_holds_the_commit(consumer):
    acknowledge(consumer, 10, [13, 14])
    asyncio.run(consumer._add_gap(TP0, 11, 12))
    assert consumer._new_offset(TP0) is None


@pytest.mark.parametrize("known, read, expected", [
    (222, 209, 222),  # read before a commit made while the seek went on: the commit stands
    (222, 230, 230),  # committed since by the partition's earlier owner
    (None, 209, 209),  # a new assignment: what Kafka has
    (None, 0, None),  # nothing committed yet
    (222, 0, 222),
])
def test_the_seek_after_a_recovery_never_moves_the_committed_offset_back(consumer, known, read, expected):
    consumer._committed_offset[TP0] = known

    async def seek_to_committed():  # aiokafka's answer, read before the worker's latest commit or after it
        return {TP0: read}

    consumer.seek_to_committed = seek_to_committed
    asyncio.run(consumer.perform_seek())
    assert consumer._committed_offset[TP0] == expected


def test_stream_partitions_are_held_back_from_their_assignment_to_the_recovery_seek(consumer, monkeypatch):
    """Fetched before that seek, a stream partition was applied to tables still being recovered, or read on from
    its position past records not committed yet, which the seek then fetched again after later ones."""
    import faust.transport.consumer

    async def faust_on_partitions_assigned(self, assigned, generation_id=0):
        pass

    monkeypatch.setattr(faust.transport.consumer.Consumer, "on_partitions_assigned", faust_on_partitions_assigned)
    changelog = TP(next(iter(consumer.app.tables.changelog_topics)), 0)
    other = TP(RAW, 1)
    fetched_for = []

    async def fetch_records(aiokafka_consumer, partitions, timeout, max_records):
        fetched_for.append(set(partitions))
        return {}

    thread = consumer._thread
    monkeypatch.setattr(thread, "_ensure_consumer", lambda: type("AIOKafka", (), {"_max_poll_records": 10})())
    monkeypatch.setattr(thread, "_fetch_records", fetch_records)
    monkeypatch.setattr(thread, "call_thread", lambda function, *args: function(*args))

    async def seek_to_committed():
        return {TP0: 5, other: 7}

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)

    async def scenario():
        await consumer.on_partitions_assigned({TP0, other, changelog})
        assert consumer._awaiting_seek == {TP0, other}
        await consumer._getmany({TP0, other, changelog}, 0.01)  # the table recovery reads the changelogs only
        await consumer._getmany({TP0, other}, 0.01)  # nothing else to fetch: no fetch at all
        await consumer._seek_to_committed_while_stopped()  # a seek back during the rebalance holds on
        await consumer._getmany({TP0, other, changelog}, 0.01)
        await consumer.perform_seek()  # the end of the recovery
        await consumer._getmany({TP0, other}, 0.01)

    asyncio.run(scenario())
    assert fetched_for == [{changelog}, {changelog}, {TP0, other}]
