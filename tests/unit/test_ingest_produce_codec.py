"""The produce round's request and response codec against aiokafka's own: same version, same bytes, same reading.

(The round trip against a real broker: ``tests/integration/test_produce_rounds_kafka.py``.)
"""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.protocol import produce

from ingest.produce_codec import ProduceRoundRequest, ProduceRoundV3To7

RECORDS = bytes(range(256)) * 3
TOPICS = {
    "one partition": [("dialpad.agent-status.v1", [(0, RECORDS)])],
    "several partitions and topics": [("raw", [(3, RECORDS[:100]), (0, RECORDS), (7, b"")]),
                                      ("dialpad.agent-status.rejected.v1", [(1, RECORDS[5:])])],
    "a topic name beyond ASCII": [("zürich", [(2, RECORDS[:9])])],
}


def as_aiokafka(request: ProduceRoundRequest) -> produce.ProduceRequest:
    return produce.ProduceRequest(None, request.required_acks, request.timeout_ms, request.topics)


def written(request_struct, correlation_id: int, client_id: str | None) -> bytes:
    """What ``AIOKafkaConnection.send`` writes after the length: header, then body."""
    return request_struct.build_request_header(correlation_id=correlation_id, client_id=client_id).encode() + \
        request_struct.encode()


@pytest.mark.parametrize("version", range(3, 8))
@pytest.mark.parametrize("shape", TOPICS)
@pytest.mark.parametrize("client_id", ["onduty-ingest", None])
def test_the_request_is_written_as_aiokafka_writes_it(version, shape, client_id):
    request = ProduceRoundRequest(-1, 10_000, TOPICS[shape])
    versions = {produce.ProduceRequest.API_KEY: (0, version)}
    ours = request.prepare(versions)
    theirs = as_aiokafka(request).prepare(versions)
    assert isinstance(ours, ProduceRoundV3To7) and ours.API_VERSION == theirs.API_VERSION == version
    assert written(ours, 2**31 - 1, client_id) == written(theirs, 2**31 - 1, client_id)


@pytest.mark.parametrize("broker_takes", [(0, 7), (3, 12), (0, 5), (3, 3), (5, 9)])
def test_the_version_is_the_one_aiokafka_picks(broker_takes):
    versions = {produce.ProduceRequest.API_KEY: broker_takes}
    request = ProduceRoundRequest(1, 500, TOPICS["one partition"])
    assert request.prepare(versions).API_VERSION == as_aiokafka(request).prepare(versions).API_VERSION


def test_a_broker_without_v3_to_v7_gets_aiokafkas_own_request_or_error():
    request = ProduceRoundRequest(-1, 10_000, TOPICS["one partition"])
    old_broker = request.prepare({produce.ProduceRequest.API_KEY: (0, 2)})
    assert type(old_broker) is produce.ProduceRequest_v2
    with pytest.raises(NotImplementedError):  # aiokafka 0.14 writes nothing newer than v7
        request.prepare({produce.ProduceRequest.API_KEY: (8, 12)})
    with pytest.raises(IncompatibleBrokerVersion):
        request.prepare({})


RESPONSES = {
    "acknowledged": [("raw", [(0, 0, 1_234_567, -1), (5, 0, 0, 1_700_000_000_000)])],
    "errors and several topics": [("raw", [(3, 6, -1, -1), (1, 45, -1, -1)]),  # not leader; out of order sequence
                                  ("dialpad.agent-status.rejected.v1", [(0, 0, 2**40, -1)])],
    "nothing": [],
}


@pytest.mark.parametrize("version", range(3, 8))
@pytest.mark.parametrize("shape", RESPONSES)
def test_the_response_is_read_as_aiokafka_reads_it(version, shape):
    response_class = getattr(produce, f"ProduceResponse_v{version}")
    topics = [(topic, [(*partition, 17) if version >= 5 else partition for partition in partitions])
              for topic, partitions in RESPONSES[shape]]
    data = response_class(topics=topics, throttle_time_ms=250).encode()
    request = ProduceRoundRequest(-1, 10_000, TOPICS["one partition"]).prepare({0: (0, version)})
    ours = request.RESPONSE_TYPE.decode(BytesIO(data))
    theirs = response_class.decode(BytesIO(data))
    assert ours.API_VERSION == theirs.API_VERSION == version
    assert [(topic, [tuple(p) for p in partitions]) for topic, partitions in ours.topics] == \
        [(topic, [tuple(p) for p in partitions]) for topic, partitions in theirs.topics]
    assert ours.throttle_time_ms == theirs.throttle_time_ms == 250


def test_the_response_header_gives_the_correlation_id():
    request = ProduceRoundRequest(-1, 10_000, TOPICS["one partition"]).prepare({0: (0, 7)})
    frame = BytesIO(struct.pack(">i", 4711) + b"rest")
    assert request.parse_response_header(frame).correlation_id == 4711
    assert frame.read() == b"rest"


def test_a_response_cut_short_raises():
    data = produce.ProduceResponse_v7(topics=[("raw", [(0, 0, 1, -1, 0)])], throttle_time_ms=0).encode()
    request = ProduceRoundRequest(-1, 10_000, TOPICS["one partition"]).prepare({0: (0, 7)})
    with pytest.raises(struct.error):
        request.RESPONSE_TYPE.decode(BytesIO(data[:-6]))
