"""Which event times are plausible: one rule for every stage (docs/semantics.md).

A ``date`` before 2001-09-09 is most likely seconds instead of milliseconds; one more than 15 minutes ahead of the
wall clock is a broken clock, a time-zone error or a typo (the spec's own sample has a timestamp with one digit too
many). Such an event must neither become an agent's current state nor advance a watermark.
"""

from __future__ import annotations

DAY_MS = 86_400_000
MIN_PLAUSIBLE_DATE_MS = 1_000_000_000_000
"""2001-09-09: an earlier ``date`` is most likely in seconds, not milliseconds."""
MAX_FUTURE_MS = 15 * 60_000
"""A ``date`` further than this ahead of the wall clock is implausible. Dialpad dates a status change when it happens
and sends the webhook within seconds; clocks disagree by far less. A time zone applied twice puts a date 15 minutes
to hours ahead (whole hours for most zones): accepted, one such event would advance its partition's watermark and
close every agent's windows early. (It was a day until 2026-12-01.)"""


def implausible_date(date_ms: int, now_ms: int) -> str | None:
    """Why ``date_ms`` cannot be an event time when the wall clock reads ``now_ms`` (None: it can)."""
    if date_ms < MIN_PLAUSIBLE_DATE_MS:
        return "date_before_2001"
    if date_ms > now_ms + MAX_FUTURE_MS:
        return "date_in_future"
    return None
