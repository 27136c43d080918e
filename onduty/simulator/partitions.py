"""Which raw-topic partition an agent's events land on: Kafka's default partitioner, in plain Python.

The ingest keys each record by agent id, and every Kafka client's default partitioner (Java, librdkafka in its
``murmur2_random`` mode, aiokafka) picks ``murmur2(key) & 0x7fffffff`` modulo the partition count. The expected
results need it because each partition keeps its own watermark: a window is only closed everywhere once the
slowest partition's watermark has passed it.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (seed 0x9747b28c), as an unsigned 32-bit integer."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & _MASK
        k ^= k >> r
        k = (k * m) & _MASK
        h = ((h * m) & _MASK) ^ k
    tail = length - length % 4
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & _MASK
    h ^= h >> 13
    h = (h * m) & _MASK
    h ^= h >> 15
    return h


def partition_for(agent_id: str, partitions: int) -> int:
    """The partition of the record keyed ``agent_id`` (UTF-8) among ``partitions``."""
    return (murmur2(agent_id.encode()) & 0x7FFFFFFF) % partitions
