"""Records fetched before a seek and handled after it are dropped; the seek's position is where reading restarts.

The worker's consumer fetches in a thread of its own and handles the records later in the event loop: a seek in
between (table recovery, the seek back after a rebalance) once made the worker skip the records the seek fetched
again, and so did records fetched after a seek but handled before the read offset was set back (the e2e test lost
events and stalled commits that way). The drain loop is driven here with scripted fetches.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from processors.app import create_app
from processors.batches import batch_topics_of
from processors.consumer import FetchedRecords
from processors.seeks import SeekLedger
from processors.settings import ProcessorSettings

RAW = "raw-events"


def test_a_fetch_is_stale_for_exactly_the_partitions_sought_after_it():
    a, b = TP("t", 0), TP("t", 1)
    seeks = SeekLedger()
    before = seeks.seeks_so_far
    seeks.sought(a, 3)
    after = seeks.seeks_so_far
    assert seeks.fetched_before_a_seek(a, before)
    assert not seeks.fetched_before_a_seek(b, before)  # never sought
    assert not seeks.fetched_before_a_seek(a, after)


def test_reading_restarts_once_per_seek_from_its_offset():
    a = TP("t", 0)
    seeks = SeekLedger()
    assert seeks.restart_from(a) is None
    seeks.sought(a, 3)
    assert seeks.restart_from(a).read_offset == 3  # type: ignore[union-attr]
    assert seeks.restart_from(a) is None  # the next fetches read on
    seeks.sought(a, None)
    seeks.sought(a, 7)  # two seeks before the next fetch: the last one counts
    assert seeks.restart_from(a).read_offset == 7  # type: ignore[union-attr]


def record(tp: TP, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


def drained_offsets(fetches: list[Any]) -> list[int]:
    """The offsets the drain loop buffers for the raw topic's batch stage, given scripted fetches: each a callable
    run in place of a fetch, returning its records (and making seeks, as the consumer's thread does)."""
    app = create_app(ProcessorSettings(raw_topic=RAW, kafka_bootstrap="127.0.0.1:1"))
    consumer = app.consumer
    fetcher = SimpleNamespace(should_stop=False)
    scripted = iter(fetches)

    async def wait_next_records(timeout: float) -> tuple[FetchedRecords, None]:
        step = next(scripted, None)
        if step is None:
            fetcher.should_stop = True
            return FetchedRecords({}, consumer._seeks.seeks_so_far), None
        return step(consumer), None

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 0  # type: ignore[method-assign]
    consumer.flow_active = True
    asyncio.run(consumer._drain_messages(fetcher))  # type: ignore[arg-type]
    return [message.offset for message in batch_topics_of(app)[RAW].buffered]


def test_a_fetch_handled_after_a_seek_of_its_partition_is_dropped_and_the_seek_fetches_again():
    tp = TP(RAW, 0)

    def first_fetch(consumer: Any) -> FetchedRecords:  # offsets 0-2 handled
        return FetchedRecords({tp: [record(tp, offset) for offset in range(3)]}, consumer._seeks.seeks_so_far)

    def fetch_then_seek(consumer: Any) -> FetchedRecords:
        fetched = FetchedRecords({tp: [record(tp, offset) for offset in range(5, 8)]}, consumer._seeks.seeks_so_far)
        consumer._seeks.sought(tp, 3)  # in the thread, after the fetch returned, before the drain loop handles it
        return fetched

    def fetch_from_the_seek(consumer: Any) -> FetchedRecords:
        return FetchedRecords({tp: [record(tp, offset) for offset in range(3, 9)]}, consumer._seeks.seeks_so_far)

    assert drained_offsets([first_fetch, fetch_then_seek, fetch_from_the_seek]) == [0, 1, 2, 3, 4, 5, 6, 7, 8]


def test_other_partitions_of_a_fetch_handled_after_a_seek_are_kept():
    sought, other = TP(RAW, 0), TP(RAW, 1)

    def fetch_then_seek(consumer: Any) -> FetchedRecords:
        fetched = FetchedRecords({sought: [record(sought, 4)], other: [record(other, 10), record(other, 11)]},
                                 consumer._seeks.seeks_so_far)
        consumer._seeks.sought(sought, 2)
        return fetched

    def fetch_from_the_seek(consumer: Any) -> FetchedRecords:
        return FetchedRecords({sought: [record(sought, 2), record(sought, 3), record(sought, 4)]},
                              consumer._seeks.seeks_so_far)

    assert drained_offsets([fetch_then_seek, fetch_from_the_seek]) == [10, 11, 2, 3, 4]


def test_records_fetched_after_a_seek_back_are_read_from_the_sought_offset():
    """The seek's caller used to set the read offset back only once the whole seek returned: records fetched
    after the partition was sought, and handled before that, were taken for records already read."""
    tp = TP(RAW, 0)

    def first_fetch(consumer: Any) -> FetchedRecords:  # offsets 0-9 read, then a rebalance drops them unapplied
        return FetchedRecords({tp: [record(tp, offset) for offset in range(10)]}, consumer._seeks.seeks_so_far)

    def seek_then_fetch(consumer: Any) -> FetchedRecords:
        batch_topics_of(consumer.app)[RAW].clear()
        consumer._seeks.sought(tp, 3)  # back to the committed offset, in the thread, before this fetch returned
        return FetchedRecords({tp: [record(tp, offset) for offset in range(3, 13)]}, consumer._seeks.seeks_so_far)

    assert drained_offsets([first_fetch, seek_then_fetch]) == list(range(3, 13))
