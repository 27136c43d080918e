"""The Kafka client's repeated lines (and the ingest producer's start retries) are limited to one per kind a minute
(onduty/log_repeats.py); our other lines are not."""

from __future__ import annotations

import logging

import pytest

from onduty import log_repeats
from onduty.commands.processor import _worker_class
from onduty.log_repeats import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def line(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_first_line_of_a_kind_goes_through_its_repeats_do_not_and_the_next_one_after_a_minute_counts_them():
    clock = Clock()
    limiter = RepeatLimiter(clock=clock)
    assert limiter.filter(line("aiokafka", "Unable connect to node with id %s: %s", 1, "refused"))
    for second in range(1, 60):  # ten a second, as aiokafka retries
        clock.now = 1_000.0 + second
        assert not limiter.filter(line("aiokafka", "Unable connect to node with id %s: %s", 1, "closed"))
    clock.now = 1_061.0
    record = line("aiokafka", "Unable connect to node with id %s: %s", 1, "refused")
    assert limiter.filter(record)
    assert record.getMessage() == ("Unable connect to node with id 1: refused "
                                   "[59 more like this in the last 61 s, not logged]")
    clock.now = 1_062.0
    assert not limiter.filter(line("aiokafka", "Unable connect to node with id %s: %s", 1, "refused"))


def test_kinds_are_told_apart_by_logger_level_and_template():
    limiter = RepeatLimiter(clock=Clock())
    assert limiter.filter(line("aiokafka", "Unable to update metadata from %s", [1]))
    assert limiter.filter(line("aiokafka", "Unable connect to node with id %s: %s", 1, "refused"))
    assert limiter.filter(line("aiokafka.producer.sender", "Unable to update metadata from %s", [1]))
    assert limiter.filter(line("aiokafka", "Unable to update metadata from %s", [1], level=logging.WARNING))
    assert not limiter.filter(line("aiokafka", "Unable to update metadata from %s", [2]))


def test_only_the_kafka_clients_loggers_are_limited():
    limiter = RepeatLimiter(clock=Clock())
    for _ in range(3):
        assert limiter.filter(line("ingest.delivery", "Kafka unavailable (%s): events go to the spool %s", "x", "/s"))
        assert limiter.filter(line("aiokafkax", "not the client"))
    assert limiter.filter(line("aiokafka.cluster", "Topic %s not found in cluster metadata", "t"))
    assert not limiter.filter(line("aiokafka.cluster", "Topic %s not found in cluster metadata", "t"))
    # the ingest's producer retries its start up to every 2 s while Kafka is down
    assert limiter.filter(line("ingest.publisher", "Kafka at %s not reachable (%s)", "k:9092", "refused"))
    assert not limiter.filter(line("ingest.publisher", "Kafka at %s not reachable (%s)", "k:9092", "refused"))


@pytest.fixture
def root_handlers():
    """The root logger with no handlers but the ones a test adds (pytest's own are put back untouched)."""
    root = logging.getLogger()
    kept, root.handlers = root.handlers, []
    try:
        yield root
    finally:
        root.handlers = kept


def test_install_puts_the_limiter_on_the_root_loggers_handlers(root_handlers):
    handler = logging.NullHandler()
    root_handlers.addHandler(handler)
    limiter = log_repeats.install()
    assert handler.filters == [limiter]


def test_the_processor_worker_keeps_the_limit_when_faust_replaces_the_root_handlers(root_handlers):
    replaced = logging.NullHandler()

    class Base:  # what faust.Worker does: mode swaps the root handlers, then calls this hook
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            root_handlers.addHandler(replaced)

    _worker_class(Base)().on_setup_root_logger(root_handlers, logging.INFO)
    assert [type(f) for f in replaced.filters] == [RepeatLimiter]


def test_installing_twice_leaves_one_limiter_per_handler(root_handlers):
    handler = logging.NullHandler()
    root_handlers.addHandler(handler)
    first = log_repeats.install()
    log_repeats.install()
    assert handler.filters == [first]
