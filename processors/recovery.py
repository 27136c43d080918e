"""Faust's table recovery, with one race of its closed.

A rebalance that arrives while a worker is recovering its tables resets the recovery's standby partitions, and
gives each newly assigned one an offset of ``None`` ("no persisted offset"). The interrupted recovery still goes on
to seek its standby partitions, and Faust passes that ``None`` on to aiokafka, which refuses it
(``ValueError: Offset must be a positive integer``): the recovery service crashes and the worker with it. Seen in
the e2e scaling test, when a worker joined while another was still restoring its tables.

Here such a partition is sought to the beginning of its changelog, as Faust does for an offset of -1 (nothing
read yet); the new rebalance restarts the recovery right after, with offsets of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

import faust
from faust.tables.recovery import Recovery
from faust.types import TP


def changelog_start_offsets(tps: Set[TP], offsets: Mapping[TP, int | None]) -> dict[TP, int]:
    """Where to seek each changelog partition: its offset, or 0 when nothing was read yet (-1, or ``None``)."""
    return {tp: 0 if offsets.get(tp) in (None, -1) else offsets[tp] for tp in tps}  # type: ignore[misc]


class RaceSafeRecovery(Recovery):
    """Faust's ``Recovery`` whose seeks accept a standby partition without an offset."""

    async def _seek_offsets(self, consumer: Any, tps: Set[TP], offsets: Any, title: str) -> None:
        await consumer.seek_wait(changelog_start_offsets(tps, offsets))


def install(app: faust.App) -> None:
    """Give the app's table manager a ``RaceSafeRecovery`` (before anything asks for its recovery service)."""
    tables = app.tables
    if tables._recovery is not None:  # type: ignore[attr-defined]
        raise RuntimeError("the table recovery service exists already")
    tables._recovery = RaceSafeRecovery(app, tables, beacon=tables.beacon, loop=tables.loop)  # type: ignore[attr-defined]
