"""A produce round's request written, and its response read, with ``struct``: ProduceRequest v3 to v7.

aiokafka encodes and decodes every request through generic schema objects (a generator and a call per field):
61 µs to encode a produce request of 8 partitions and 53 µs to decode its v7 response, in a loop. Every produce
round pays both, and at the rates webhooks arrive a round carries a few records, so the round's own cost is most
of it. Written out here: the same bytes, the same response structure, in 11 and 7 µs.

Kafka 4 brokers take ProduceRequest v3 to v12; aiokafka 0.14 sends at most v7. v3 to v7 share one request
layout; their responses add ``log_start_offset`` from v5. ``ProduceRoundRequest.prepare`` picks the newest
version up to v7 that the broker takes, as aiokafka's ``ProduceRequest.prepare`` does; for a broker that takes
none of v3 to v7 it returns aiokafka's own request, so nothing changes there. A response is read as aiokafka
reads it, trailing bytes ignored; one cut short raises ``struct.error``, which closes the connection and
retries the round, as aiokafka's own decoding error would.
"""

from __future__ import annotations

import struct
from io import BytesIO

from aiokafka.protocol.produce import ProduceRequest

_PRODUCE_API_KEY = 0
_WRITTEN_HERE = range(3, 8)

_HEADER = struct.Struct(">hhih")  # api key, api version, correlation id, client id length
_ACKS_TIMEOUT = struct.Struct(">hi")
_COUNT = struct.Struct(">i")
_NAME_LENGTH = struct.Struct(">h")
_PARTITION_RECORDS = struct.Struct(">ii")  # partition, records length
_NO_TRANSACTIONAL_ID = b"\xff\xff"
_PARTITION_RESPONSE = {version: struct.Struct(">ihqqq" if version >= 5 else ">ihqq") for version in _WRITTEN_HERE}
"""partition, error code, base offset, log append time and, from v5, log start offset"""


class ProduceRoundRequest:
    """What ``AIOKafkaConnection.send`` needs of a request, for one round's batches, no transaction.

    ``topics``: ``[(topic, [(partition, record batch bytes), ...]), ...]``, as aiokafka's ``ProduceRequest``."""

    API_KEY = _PRODUCE_API_KEY

    def __init__(self, required_acks: int, timeout_ms: int, topics: list[tuple[str, list[tuple[int, bytes]]]]) -> None:
        self.required_acks, self.timeout_ms, self.topics = required_acks, timeout_ms, topics

    def prepare(self, versions: dict[int, tuple[int, int]]) -> object:
        """The request for the version aiokafka would pick: written here for v3 to v7, else aiokafka's own."""
        lowest, highest = versions.get(_PRODUCE_API_KEY, (-1, -1))
        version = min(highest, _WRITTEN_HERE[-1])
        if version in _WRITTEN_HERE and version >= lowest:
            return ProduceRoundV3To7(self, version)
        return ProduceRequest(None, self.required_acks, self.timeout_ms, self.topics).prepare(versions)


class ProduceRoundV3To7:
    """One round's request as ProduceRequest ``version`` (3 to 7), and the reader of its response."""

    API_KEY = _PRODUCE_API_KEY
    FLEXIBLE_VERSION = False

    def __init__(self, request: ProduceRoundRequest, version: int) -> None:
        self.request, self.API_VERSION = request, version
        self.RESPONSE_TYPE = _RESPONSE_READERS[version]

    def build_request_header(self, correlation_id: int, client_id: str | None) -> _Encoded:
        """Request header v1."""
        if client_id is None:
            return _Encoded(_HEADER.pack(_PRODUCE_API_KEY, self.API_VERSION, correlation_id, -1))
        name = client_id.encode()
        return _Encoded(_HEADER.pack(_PRODUCE_API_KEY, self.API_VERSION, correlation_id, len(name)) + name)

    def encode(self) -> bytes:
        request = self.request
        parts = [_NO_TRANSACTIONAL_ID, _ACKS_TIMEOUT.pack(request.required_acks, request.timeout_ms),
                 _COUNT.pack(len(request.topics))]
        for topic, partitions in request.topics:
            name = topic.encode()
            parts += (_NAME_LENGTH.pack(len(name)), name, _COUNT.pack(len(partitions)))
            for partition, records in partitions:
                parts += (_PARTITION_RECORDS.pack(partition, len(records)), records)
        return b"".join(parts)

    @staticmethod
    def parse_response_header(response: BytesIO) -> _ResponseHeader:
        """Response header v0: the correlation id."""
        return _ResponseHeader(_COUNT.unpack(response.read(4))[0])

    def __repr__(self) -> str:
        request = self.request
        partitions = [(topic, [partition for partition, _ in batches]) for topic, batches in request.topics]
        return (f"ProduceRequest_v{self.API_VERSION}(required_acks={request.required_acks}, "
                f"timeout={request.timeout_ms}, partitions={partitions})")


class ProduceRoundResponse:
    """What ``SendProduceReqHandler.handle_response`` reads of a produce response: its version and ``topics``,
    ``[(topic, [(partition, error_code, offset, timestamp[, log_start_offset]), ...]), ...]``."""

    __slots__ = ("API_VERSION", "topics", "throttle_time_ms")

    def __init__(self, version: int, topics: list[tuple[str, list[tuple[int, ...]]]], throttle_time_ms: int) -> None:
        self.API_VERSION, self.topics, self.throttle_time_ms = version, topics, throttle_time_ms

    def __repr__(self) -> str:
        return f"ProduceResponse_v{self.API_VERSION}(topics={self.topics}, throttle_time_ms={self.throttle_time_ms})"


class _ProduceResponseReader:
    def __init__(self, version: int) -> None:
        self.version = version

    def decode(self, response: BytesIO) -> ProduceRoundResponse:
        data = response.read()
        partition_response = _PARTITION_RESPONSE[self.version]
        offset = 4
        topics = []
        for _ in range(_COUNT.unpack_from(data)[0]):
            length = _NAME_LENGTH.unpack_from(data, offset)[0]
            offset += 2
            name = data[offset:offset + length].decode() if length >= 0 else None
            offset += max(length, 0)
            count = _COUNT.unpack_from(data, offset)[0]
            offset += 4
            partitions = []
            for _ in range(count):
                partitions.append(partition_response.unpack_from(data, offset))
                offset += partition_response.size
            topics.append((name, partitions))
        (throttle_time_ms,) = _COUNT.unpack_from(data, offset)
        return ProduceRoundResponse(self.version, topics, throttle_time_ms)


_RESPONSE_READERS = {version: _ProduceResponseReader(version) for version in _WRITTEN_HERE}


class _Encoded:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self) -> bytes:
        return self.data


class _ResponseHeader:
    __slots__ = ("correlation_id",)

    def __init__(self, correlation_id: int) -> None:
        self.correlation_id = correlation_id
