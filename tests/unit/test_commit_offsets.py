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
