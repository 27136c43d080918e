"""Idle advance counts only wall-clock time a worker watched the partition (processors/idle_advance.py)."""

from __future__ import annotations

from processors.idle_advance import Watch, idle_advanced_date

IDLE_AFTER = 60_000
DATE = 1_700_000_000_000  # the partition's latest event time
WALL = 1_800_000_000_000  # a wall clock, unrelated: replayed history lies far behind it


def test_an_idle_partition_moves_on_from_its_latest_event_applied_during_the_watch():
    watch = Watch(since_wall_ms=WALL, max_date_ms=None)
    applied = WALL + 5_000  # the latest event came during the watch
    assert idle_advanced_date(watch, DATE, applied, applied + IDLE_AFTER - 1, IDLE_AFTER) is None
    assert idle_advanced_date(watch, DATE, applied, applied + IDLE_AFTER, IDLE_AFTER) == DATE
    assert idle_advanced_date(watch, DATE, applied, applied + IDLE_AFTER + 7_000, IDLE_AFTER) == DATE + 7_000


def test_downtime_is_not_idle_time_the_watch_starts_where_event_time_stood():
    # the latest event was applied an hour before the worker restarted; since then (unknown to this worker) the
    # raw topic may hold a backlog: event time must not jump by the hour before it was read
    applied_before_restart = WALL - 3_600_000
    watch = Watch(since_wall_ms=WALL, max_date_ms=DATE)  # not advanced while idle before: wait idle_after
    assert idle_advanced_date(watch, DATE, applied_before_restart, WALL + 1_000, IDLE_AFTER) is None
    assert idle_advanced_date(watch, DATE, applied_before_restart, WALL + IDLE_AFTER + 2_000, IDLE_AFTER) == \
        DATE + 2_000


def test_a_partition_idle_already_goes_on_at_once_after_a_rebalance_or_restart():
    # idle advance had moved its event time on when the watch started: it goes on from there, not from the hour
    # of downtime before, and without waiting idle_after once more (each rebalance would add that much lag)
    applied_long_ago = WALL - 3_600_000
    reached = DATE + 30_000
    watch = Watch(since_wall_ms=WALL, max_date_ms=reached)
    assert idle_advanced_date(watch, DATE, applied_long_ago, WALL, IDLE_AFTER) == reached
    assert idle_advanced_date(watch, DATE, applied_long_ago, WALL + 2_000, IDLE_AFTER) == reached + 2_000


def test_a_partition_that_never_had_an_event_does_not_move():
    watch = Watch(since_wall_ms=WALL, max_date_ms=None)
    assert idle_advanced_date(watch, None, 0, WALL + 10 * IDLE_AFTER, IDLE_AFTER) is None
