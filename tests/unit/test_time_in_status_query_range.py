"""The time-in-status queries' range: windows starting in [from, to), by default the last day of event time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from processors.time_in_status_views import QueryError, parse_range

M, H, D = 60_000, 3_600_000, 86_400_000
SIZES = (15 * M, H, D)
LATEST = 1_796_033_100_000  # 2026-11-30 10:05 UTC


def query(**params: str) -> SimpleNamespace:
    return SimpleNamespace(query=params)


@pytest.mark.parametrize("size", SIZES)
def test_by_default_the_range_ends_with_the_window_holding_the_latest_event_and_spans_a_day(size):
    got_size, from_ms, to_ms = parse_range(query(size=f"{size // M}m"), SIZES, LATEST)
    holding_latest = LATEST - LATEST % size
    assert got_size == size and to_ms == holding_latest + size
    assert from_ms <= holding_latest < to_ms  # the current window is in, also for a window of a day
    assert to_ms - from_ms == D


def test_explicit_bounds_and_refusals():
    assert parse_range(query(size="1h", **{"from": "0", "to": "7200000"}), SIZES, LATEST) == (H, 0, 2 * H)
    with pytest.raises(QueryError, match="not a configured window size"):
        parse_range(query(size="2h"), SIZES, LATEST)
    with pytest.raises(QueryError, match="must be before"):
        parse_range(query(**{"from": "5", "to": "5"}), SIZES, LATEST)


def test_a_parameter_the_query_does_not_take_is_refused_not_ignored():
    # `window=1h` instead of `size=1h` used to answer the default size without a word
    with pytest.raises(QueryError, match=r"unknown query parameter 'window': this query takes size, from, to"):
        parse_range(query(window="1h"), SIZES, LATEST)
    with pytest.raises(QueryError, match=r"unknown query parameter 'since', 'until'"):
        parse_range(query(size="1h", since="0", until="5"), SIZES, LATEST)
