"""Window maths: which windows hold a timestamp, how an interval is cut at window boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.windows import (
    closed_boundary,
    cut_interval,
    cut_interval_sizes,
    get_window_ranges,
    window_start,
    windows_overlapping,
)

M = 60_000
H = 3_600_000
D = 86_400_000


@pytest.mark.parametrize(
    ("timestamp", "size", "expected"),
    [
        (0, 15 * M, 0),  # the epoch is a boundary of every size
        (15 * M, 15 * M, 15 * M),  # timestamp on window boundary belongs to the window it starts
        (15 * M - 1, 15 * M, 0),  # last millisecond of a window
        (15 * M + 1, 15 * M, 15 * M),  # first millisecond after a boundary
        (1_700_000_123_456, D, 1_699_920_000_000),  # a real date, UTC midnight (no time zone offset)
        (-1, 15 * M, -15 * M),  # before the epoch: floor, not truncation towards zero
        (7, 1, 7),  # 1 ms windows hold one millisecond each
    ],
)
def test_window_start(timestamp: int, size: int, expected: int) -> None:
    assert window_start(timestamp, size) == expected


@pytest.mark.parametrize("size", [0, -15 * M])
def test_window_start_rejects_non_positive_sizes(size: int) -> None:
    # a zero size would loop forever in cut_interval; say so instead
    with pytest.raises(ValueError, match="positive"):
        window_start(1, size)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        # timestamp on an hour boundary: every size starts a window there
        (2 * H, [(15 * M, 2 * H, 2 * H + 15 * M), (H, 2 * H, 3 * H), (D, 0, D)]),
        # timestamp one millisecond before midnight: the last window of each size
        (D - 1, [(15 * M, D - 15 * M, D), (H, D - H, D), (D, 0, D)]),
    ],
)
def test_get_window_ranges(timestamp: int, expected: list[tuple[int, int, int]]) -> None:
    assert get_window_ranges(timestamp, [15 * M, H, D]) == expected


@pytest.mark.parametrize(
    ("start", "end", "size", "expected"),
    [
        (0, 0, 15 * M, []),  # zero-length interval counts nothing
        (10, 5, 15 * M, []),  # inverted interval counts nothing
        (M, 2 * M, 15 * M, [(0, M)]),  # inside one window
        (0, 15 * M, 15 * M, [(0, 15 * M)]),  # exactly one window: end on boundary is exclusive
        (14 * M, 16 * M, 15 * M, [(0, M), (15 * M, M)]),  # straddles one boundary
        (15 * M - 1, 15 * M + 1, 15 * M, [(0, 1), (15 * M, 1)]),  # one millisecond each side of a boundary
        (5 * M, 50 * M, 15 * M, [(0, 10 * M), (15 * M, 15 * M), (30 * M, 15 * M), (45 * M, 5 * M)]),  # spans
        (D - 1, D + 1, D, [(0, 1), (D, 1)]),  # crosses UTC midnight
        (-M, M, 15 * M, [(-15 * M, M), (0, M)]),  # crosses the epoch
    ],
)
def test_cut_interval(start: int, end: int, size: int, expected: list[tuple[int, int]]) -> None:
    assert list(cut_interval(start, end, size)) == expected


def test_cut_interval_sizes_gives_each_size_the_whole_interval() -> None:
    # 14:50 -> 15:10 on day 0: two quarter-hours, two hours, one day
    pieces = list(cut_interval_sizes(14 * H + 50 * M, 15 * H + 10 * M, [15 * M, H, D]))
    assert pieces == [
        (15 * M, 14 * H + 45 * M, 10 * M), (15 * M, 15 * H, 10 * M),
        (H, 14 * H, 10 * M), (H, 15 * H, 10 * M),
        (D, 0, 20 * M),
    ]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 1, [0]),  # one millisecond at the epoch
        (15 * M, 30 * M, [15 * M]),  # exactly a window: the next one does not overlap
        (15 * M - 1, 15 * M + 1, [0, 15 * M]),  # across a boundary
        (5, 5, []),  # empty interval overlaps nothing
    ],
)
def test_windows_overlapping(start: int, end: int, expected: list[int]) -> None:
    assert windows_overlapping(start, end, 15 * M) == expected


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (15 * M, 15 * M),  # watermark on window boundary: the window ending there is closed
        (15 * M - 1, 0),  # one millisecond short: still open
        (0, 0),  # nothing before the epoch window is closed yet
    ],
)
def test_closed_boundary(watermark: int, expected: int) -> None:
    assert closed_boundary(watermark, 15 * M) == expected


@settings(max_examples=200)
@given(
    start=st.integers(-2 * D, 2 * D),
    windows=st.integers(0, 50),
    extra=st.integers(0, D),
    size=st.sampled_from([1, 7, 15 * M, H, D]),
)
def test_cut_interval_pieces_are_exact(start: int, windows: int, extra: int, size: int) -> None:
    length = windows * size + extra % size  # at most ~51 windows, whatever the size
    pieces = list(cut_interval(start, start + length, size))
    assert sum(ms for _, ms in pieces) == length
    for window, ms in pieces:
        assert window % size == 0 and 0 < ms <= size
        # each piece is the overlap of the interval with its window
        assert ms == min(window + size, start + length) - max(window, start)
    assert [w for w, _ in pieces] == sorted({w for w, _ in pieces})
