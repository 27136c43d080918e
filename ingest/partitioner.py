"""Which partition a record goes to: Kafka's default, murmur2 of the key, as the Java client and aiokafka compute it.

aiokafka hashes the key in pure Python for every message it sends. A key's hash never changes and the keys
are agent ids (thousands, while requests are millions), so the hash is remembered per key; the partition is
then the hash modulo the partition count known at the time, so a change of partition count needs no flush.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from schemas.partitioning import murmur2


class KeyPartitioner:
    """Same answers as aiokafka's ``DefaultPartitioner``; remembers up to ``max_keys`` key hashes."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def partition(self, key: bytes | None, partitions: Sequence[int]) -> int:
        """The partition of ``key`` among ``partitions`` (sorted by id); a random one for a record without key."""
        if key is None:
            return random.choice(partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_keys:  # bounded: forget everything, rare and cheap to recompute
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]
