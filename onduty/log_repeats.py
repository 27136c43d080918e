"""Repeated log lines of the Kafka client (and of the ingest's producer starting it), at most one per kind a minute.

While Kafka is unreachable, aiokafka retries every 100 ms or so and logs every attempt: an ingest service whose
broker was down for 22 s logged 939 lines, about 43 a second ("Unable connect to node with id 1", "Unable to
update metadata from [1]", "Got error produce response: NodeNotReadyError"), so an outage of an hour would bury
everything else in the log. Our own lines already say what matters: when Kafka became unreachable, that events go
to the spool, and when it is back.

``RepeatLimiter`` lets the first line of each kind through (a kind is the logger, the level and the message
template before its arguments: "Unable connect to node with id %s: %s" whatever the node and the error), drops
the repeats for ``interval_s``, and then lets the next one through saying how many it dropped. When no next one
comes (the outage is over), the count is still told: a line of its own, on the kind's logger and level, before
the next line of any logger once ``interval_s`` has passed (typically ours saying Kafka is back), and at exit for
whatever is left. Only the loggers named by ``prefixes`` are limited; ``install`` puts it on the root logger's
handlers, where every logger's lines pass (a filter on a logger would not see its children's).
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable, Iterable

KAFKA_CLIENT_LOGGERS = ("aiokafka", "ingest.publisher")
"""aiokafka's loggers, and the ingest's producer, whose failed start is retried up to every 2 s while Kafka is down."""
INTERVAL_S = 60.0
_KINDS_KEPT = 1_000


class RepeatLimiter(logging.Filter):
    """At most one line per kind and ``interval_s`` from the loggers named by ``prefixes`` (and their children)."""

    def __init__(self, prefixes: Iterable[str] = KAFKA_CLIENT_LOGGERS, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._prefixes = tuple(prefixes)
        self._interval_s = interval_s
        self._clock = clock
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        """Per kind: when its last line went through, and how many were dropped since."""
        self._decided: tuple[logging.LogRecord | None, bool] = (None, True)
        """The latest line and whether it went through: every handler the limiter is on asks about each line."""
        self._untold: dict[tuple[str, int, str], None] = {}
        """The kinds with dropped lines not told yet, in the order of their first drop."""
        self._telling = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self._telling:  # a count being told (below): never limited itself
            return True
        if self._decided[0] is record:  # asked again by another handler of the same logger
            return self._decided[1]
        decision = self._decide(record)
        self._decided = (record, decision)
        return decision

    def _decide(self, record: logging.LogRecord) -> bool:
        limited = self._limits(record.name)
        kind = (record.name, record.levelno, str(record.msg)) if limited else None
        if self._untold:
            self.tell_dropped(only_after_interval=True, but=kind)
        if not limited:
            return True
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self._interval_s:
            seen[1] += 1
            self._untold[kind] = None
            return False
        if len(self._kinds) >= _KINDS_KEPT:  # templates are few; pre-formatted messages could be many
            self.tell_dropped(only_after_interval=False)
            self._kinds.clear()
        self._kinds[kind] = [now, 0]
        if seen is not None and seen[1]:
            del self._untold[kind]
            record.msg = f"{record.msg} [{int(seen[1])} more like this in the last {now - seen[0]:.0f} s, not logged]"
        return True

    def tell_dropped(self, *, only_after_interval: bool = False, but: tuple[str, int, str] | None = None) -> None:
        """Log, for each kind with dropped lines (``only_after_interval``: whose interval has passed; not ``but``,
        whose next line tells it), how many were dropped: on the kind's logger and level, so that it reads as
        that logger's line."""
        now = self._clock()
        self._telling = True
        try:
            for kind in list(self._untold):
                seen = self._kinds[kind]
                dropped, since = int(seen[1]), now - seen[0]
                if kind == but or (only_after_interval and since < self._interval_s):
                    continue
                name, level, template = kind
                seen[1] = 0
                del self._untold[kind]
                logging.getLogger(name).log(level, "[%d more lines like %r in the %.0f s after the last one logged, "
                                                   "not logged]", dropped, template, since)
        finally:
            self._telling = False

    def _limits(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self._prefixes)


_process_limiter: RepeatLimiter | None = None
"""The limiter ``install`` puts on the root handlers by default: one per process, so that when the handlers are
replaced (Faust's worker sets up logging anew) the new ones get it with its counts, and what it dropped before is
still told."""


def install(limiter: logging.Filter | None = None) -> logging.Filter:
    """Put ``limiter`` (by default the process's ``RepeatLimiter``, made on first use) on every handler of the root
    logger that has none."""
    global _process_limiter
    if limiter is None:
        _process_limiter = limiter = _process_limiter or RepeatLimiter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatLimiter) for f in handler.filters):
            handler.addFilter(limiter)
    return limiter


@atexit.register  # runs before logging's own shutdown: atexit runs the latest registered first
def _tell_dropped_at_exit() -> None:
    """What the limiters on the root logger's handlers dropped and did not tell yet."""
    limiters = {id(f): f for h in logging.getLogger().handlers for f in h.filters if isinstance(f, RepeatLimiter)}
    for limiter in limiters.values():
        limiter.tell_dropped()
