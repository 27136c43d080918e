"""Which partitions the worker's consumer sought and when, so that records fetched before a seek are told apart
from records fetched after it.

The consumer runs aiokafka in a thread of its own. A fetch hands its records over to the worker's event loop, where
the drain loop handles them a little later. A seek in between (the table recovery's, the seek back to the committed
offsets after a rebalance) moves the partition's position back; the records of that fetch are then from before the
seek, and handling them would move the read offset past the records the seek is to fetch again, which would be
skipped: lost, or left behind a commit that never passes them. Conversely, records fetched just after a seek may
be handled before the seek's caller gets to set the read offset back (Faust's ``perform_seek`` did so only once
every partition was sought), and be skipped as records already read.

Seeks and fetches are numbered in the consumer's thread, in the same step as aiokafka's seek or the fetch's return:
a partition's records are from before a seek exactly when the partition was sought after the fetch returned them.
aiokafka itself drops records fetched before a seek that happened before they were returned. The read offset a
seek implies is set by the drain loop, from the ledger, when it handles the first records fetched after the seek.
"""

from __future__ import annotations

from dataclasses import dataclass

from faust.types import TP


@dataclass(frozen=True)
class Seek:
    number: int
    """How many seeks the ledger had seen when this one was made, itself included."""
    read_offset: int | None
    """Where the drain loop starts reading after it: the offset sought to, or ``None`` for the beginning."""


class SeekLedger:
    """Seeks recorded in the consumer's thread, read by the drain loop in the event loop (plain attribute writes,
    each atomic under the GIL)."""

    def __init__(self) -> None:
        self._seeks = 0
        self._last: dict[TP, Seek] = {}
        self._started_from: dict[TP, int] = {}
        """The seek each partition's read offset was last set from, by number."""

    def sought(self, tp: TP, read_offset: int | None) -> None:
        """In the consumer's thread, in the same step as aiokafka's seek of ``tp``."""
        self._seeks += 1
        self._last[tp] = Seek(self._seeks, read_offset)

    @property
    def seeks_so_far(self) -> int:
        """In the consumer's thread, in the same step as a fetch returns: the number its records are tagged with."""
        return self._seeks

    def fetched_before_a_seek(self, tp: TP, seeks_before_fetch: int) -> bool:
        """Whether ``tp`` was sought after a fetch tagged ``seeks_before_fetch`` returned its records."""
        last = self._last.get(tp)
        return last is not None and last.number > seeks_before_fetch

    def restart_from(self, tp: TP) -> Seek | None:
        """The seek that ``tp``'s records, fetched after it, are the first to follow (once per seek): the drain loop
        sets the partition's read offset from it before handling them. ``None`` when that was done already."""
        last = self._last.get(tp)
        if last is None or self._started_from.get(tp) == last.number:
            return None
        self._started_from[tp] = last.number
        return last
