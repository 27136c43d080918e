"""The table recovery's seeks accept a standby partition that a rebalance added without an offset."""

from __future__ import annotations

from collections import Counter

from faust.types import TP

from processors.recovery import RaceSafeRecovery, changelog_start_offsets


class SeekRecorder:
    def __init__(self) -> None:
        self.seeks: dict[TP, int] = {}

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        assert all(isinstance(offset, int) and offset >= 0 for offset in partitions.values()), partitions
        self.seeks.update(partitions)


def test_nothing_read_yet_starts_at_the_beginning_and_read_offsets_stay():
    read, fresh, added = TP("c", 0), TP("c", 1), TP("c", 2)
    offsets: Counter = Counter({read: 41, fresh: -1})
    offsets.setdefault(added, None)  # what Faust's add_standby leaves for a partition without a persisted offset
    assert changelog_start_offsets({read, fresh, added}, offsets) == {read: 41, fresh: 0, added: 0}


async def test_the_recoverys_seek_passes_aiokafka_only_offsets():
    consumer = SeekRecorder()
    added = TP("c", 3)
    offsets: Counter = Counter()
    offsets.setdefault(added, None)
    await RaceSafeRecovery._seek_offsets(None, consumer, {added}, offsets, "standby")  # type: ignore[arg-type]
    assert consumer.seeks == {added: 0}
