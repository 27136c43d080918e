"""Tumbling event-time windows aligned to the UTC epoch: pure maths, no Faust.

A window of size ``s`` starting at ``w`` covers ``[w, w + s)`` with ``w % s == 0``. All times are unix
milliseconds UTC. Modelled on quix-streams' ``get_window_ranges``: free functions, integer arithmetic only,
so every millisecond of an interval lands in exactly one window of each size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def window_start(timestamp_ms: int, size_ms: int) -> int:
    """Start of the window of ``size_ms`` that contains ``timestamp_ms`` (floor, also for negative times)."""
    if size_ms <= 0:
        raise ValueError(f"window size must be positive, got {size_ms}")
    return timestamp_ms - timestamp_ms % size_ms


def get_window_ranges(timestamp_ms: int, sizes_ms: Iterable[int]) -> list[tuple[int, int, int]]:
    """The ``(size_ms, start_ms, end_ms)`` of every window (one per size) that contains ``timestamp_ms``."""
    ranges = []
    for size in sizes_ms:
        start = window_start(timestamp_ms, size)
        ranges.append((size, start, start + size))
    return ranges


def cut_interval(start_ms: int, end_ms: int, size_ms: int) -> Iterator[tuple[int, int]]:
    """Cut ``[start_ms, end_ms)`` at the boundaries of windows of ``size_ms``.

    Yields ``(window_start_ms, milliseconds of the interval in that window)``, in time order; an empty or
    inverted interval yields nothing.
    """
    if end_ms <= start_ms:
        return
    window = window_start(start_ms, size_ms)
    cursor = start_ms
    while cursor < end_ms:
        window_end = window + size_ms
        piece_end = window_end if window_end < end_ms else end_ms
        yield window, piece_end - cursor
        cursor = piece_end
        window = window_end


def cut_interval_sizes(
    start_ms: int, end_ms: int, sizes_ms: Iterable[int]
) -> Iterator[tuple[int, int, int]]:
    """``cut_interval`` for several sizes at once: yields ``(size_ms, window_start_ms, milliseconds)``."""
    for size in sizes_ms:
        for window, ms in cut_interval(start_ms, end_ms, size):
            yield size, window, ms


def windows_overlapping(start_ms: int, end_ms: int, size_ms: int) -> list[int]:
    """Starts of the windows of ``size_ms`` that share at least one millisecond with ``[start_ms, end_ms)``."""
    return [window for window, _ in cut_interval(start_ms, end_ms, size_ms)]


def closed_boundary(watermark_ms: int, size_ms: int) -> int:
    """Every window of ``size_ms`` ending at or before this time is closed at ``watermark_ms``.

    A window ``[w, w + s)`` closes when the watermark reaches its end: ``w + s <= watermark``.
    """
    return window_start(watermark_ms, size_ms)
