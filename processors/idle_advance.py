"""Idle advance: how far an idle partition's event time moves on with the wall clock (live mode only).

A partition without events for ``idle_after`` moves its event time on by the wall-clock time it has been idle
beyond that, so that windows close during a silence. Only wall-clock time this worker watched the partition
counts: a worker that (re)starts, or takes a partition over, starts a ``Watch``, and until an event arrives the
advance is counted from there, on from the event time reached then (at once when that had been advanced already,
after ``idle_after`` otherwise). Counted from the latest event instead, the
first tick after a restart would throw event time ahead by the whole downtime, ahead of the backlog written
meanwhile: windows would close before their events were read, and the events would come in as late.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Watch:
    """Since when (wall clock) this worker watches a partition, and the event time the partition had then."""

    since_wall_ms: int
    max_date_ms: int | None


def idle_advanced_date(
    watch: Watch, event_max_date_ms: int | None, last_event_wall_ms: int, wall_ms: int, idle_after_ms: int
) -> int | None:
    """The event time an idle partition has reached at ``wall_ms``; None while it is not idle for long enough.

    ``event_max_date_ms`` is the highest ``date`` of its events and ``last_event_wall_ms`` when the latest of them
    was applied: the advance is counted from that event when it was applied during the watch, from the watch's
    start otherwise.
    """
    if last_event_wall_ms >= watch.since_wall_ms:
        base_date_ms, base_wall_ms = event_max_date_ms, last_event_wall_ms
    else:
        base_date_ms, base_wall_ms = watch.max_date_ms, watch.since_wall_ms
        if base_date_ms is not None and event_max_date_ms is not None and base_date_ms > event_max_date_ms:
            # idle already when the watch started (its event time had been advanced): it goes on from there,
            # without waiting idle_after again (a rebalance would otherwise hold it back each time)
            return base_date_ms + max(0, wall_ms - base_wall_ms)
    idle_for = wall_ms - base_wall_ms
    if base_date_ms is None or idle_for < idle_after_ms:
        return None
    return base_date_ms + idle_for - idle_after_ms
