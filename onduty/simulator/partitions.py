"""Which raw-topic partition an agent's events land on: Kafka's default partitioner, in plain Python.

The ingest keys each record by agent id, and every Kafka client's default partitioner (Java, librdkafka in its
``murmur2_random`` mode, aiokafka) picks ``murmur2(key) & 0x7fffffff`` modulo the partition count. The expected
results need it because each partition keeps its own watermark: a window is only closed everywhere once the
slowest partition's watermark has passed it.
"""

from __future__ import annotations

from schemas.partitioning import default_partition


def partition_for(agent_id: str, partitions: int) -> int:
    """The partition of the record keyed ``agent_id`` (UTF-8) among ``partitions``."""
    return default_partition(agent_id.encode(), partitions)
