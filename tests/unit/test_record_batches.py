"""Records appended through aiokafka's C record-batch builder give the batch ``BatchBuilder.append`` gives."""

from __future__ import annotations

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from onduty.record_batches import append_record

RECORDS = [(b"agent-%d" % i, b"x" * (500 if i == 3 else 20), 1_700_000_000_000 + i) for i in range(8)]


def _built(batch: BatchBuilder) -> bytes:
    batch._set_producer_state(producer_id=7, producer_epoch=0, base_sequence=42)
    return bytes(batch._build())


@pytest.mark.parametrize("batch_size", [16384, 700])  # every record fits / the batch fills up
@pytest.mark.parametrize("headers", [None, [("onduty-dedup-id", b"0" * 32)], (("h", b"v"),)])
def test_appending_through_the_c_builder_builds_the_batch_append_builds(batch_size, headers):
    direct, through_append = BatchBuilder(batch_size, 0), BatchBuilder(batch_size, 0)
    appended = [append_record(direct, key, value, timestamp, headers) for key, value, timestamp in RECORDS]
    expected = [through_append.append(key=key, value=value, timestamp=timestamp, headers=list(headers or ()))
                is not None for key, value, timestamp in RECORDS]
    assert appended == expected
    assert all(appended) is (batch_size == 16384)
    assert direct.record_count() == through_append.record_count() == sum(appended)
    assert direct._closed is through_append._closed is (batch_size == 700)
    assert _built(direct) == _built(through_append)


def test_a_closed_batch_takes_no_record():
    batch = BatchBuilder(16384, 0)
    batch.close()
    assert append_record(batch, b"k", b"v", 1) is False
    assert batch.record_count() == 0


class OtherBatch:
    """A batch that is not aiokafka's ``BatchBuilder`` (a test double): records go through its ``append``."""

    def __init__(self) -> None:
        self.records: list[tuple] = []

    def append(self, *, key, value, timestamp, headers):
        if len(self.records) == 2:
            return None
        self.records.append((key, value, timestamp, headers))
        return object()


def test_any_other_batch_goes_through_its_append():
    batch = OtherBatch()
    assert [append_record(batch, b"k", b"v%d" % i, i, [("h", b"v")]) for i in range(3)] == [True, True, False]
    assert batch.records == [(b"k", b"v0", 0, [("h", b"v")]), (b"k", b"v1", 1, [("h", b"v")])]
