"""Which partition a record goes to: Kafka's default, murmur2 of the key, as the Java client and aiokafka compute it.

aiokafka hashes the key in pure Python for every message it sends. A key's hash never changes and the keys
are agent ids (thousands, while requests are millions), so ``schemas.partitioning.default_partition`` remembers
it per key (the one cache the processors and the simulator use too); the partition is then the hash modulo the
partition count known at the time, so a change of partition count needs no flush.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from schemas.partitioning import default_partition


class KeyPartitioner:
    """Same answers as aiokafka's ``DefaultPartitioner``."""

    def partition(self, key: bytes | None, partitions: Sequence[int]) -> int:
        """The partition of ``key`` among ``partitions`` (sorted by id); a random one for a record without key."""
        if key is None:
            return random.choice(partitions)
        return partitions[default_partition(key, len(partitions))]
