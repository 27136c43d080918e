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
    kept, level, root.handlers = root.handlers, root.level, []
    filters = {handler: list(handler.filters) for handler in kept}  # pytest adds these again for the test's call
    process_limiter, log_repeats._process_limiter = log_repeats._process_limiter, None  # a new process's
    try:
        yield root
    finally:
        log_repeats._process_limiter = process_limiter
        root.handlers = kept
        root.setLevel(level)
        for handler, before in filters.items():  # no limiter of a test left on pytest's handlers
            handler.filters = before


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

    first = logging.NullHandler()
    root_handlers.addHandler(first)
    installed = log_repeats.install()  # what the onduty command does first
    root_handlers.removeHandler(first)
    _worker_class(Base)().on_setup_root_logger(root_handlers, logging.INFO)
    assert replaced.filters == [installed]  # the same limiter: what it dropped before is still told


def test_what_was_dropped_before_faust_replaced_the_root_handlers_is_told_after(root_handlers):
    clock, told = Clock(), []
    log_repeats._process_limiter = RepeatLimiter(clock=clock)
    root_handlers.setLevel(logging.INFO)
    first = logging.Handler()  # not a NullHandler: that one never asks its filters
    first.emit = lambda record: None
    root_handlers.addHandler(first)
    log_repeats.install()  # the onduty command, before the worker starts
    kafka = logging.getLogger("aiokafka")
    for second in range(3):
        clock.now = 1_000.0 + second
        kafka.error("Unable connect to node with id %s: %s", 1, "refused")
    replaced = logging.Handler()
    replaced.emit = lambda record: told.append(record.getMessage())

    class Base:  # faust.Worker: the root handlers swapped, then this hook
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            root_handlers.removeHandler(first)
            root_handlers.addHandler(replaced)

    _worker_class(Base)().on_setup_root_logger(root_handlers, logging.INFO)
    clock.now = 1_075.0
    logging.getLogger("processors.worker").info("worker ready")
    assert told == ["[2 more lines like 'Unable connect to node with id %s: %s' in the 75 s after the last one "
                    "logged, not logged]", "worker ready"]


def test_installing_twice_leaves_one_limiter_per_handler(root_handlers):
    handler = logging.NullHandler()
    root_handlers.addHandler(handler)
    first = log_repeats.install()
    log_repeats.install()
    assert handler.filters == [first]


def test_a_count_no_next_line_of_its_kind_would_tell_is_told_before_the_next_line_once_its_minute_passed(
        root_handlers):
    clock, told = Clock(), []
    handler = logging.Handler()
    handler.emit = lambda record: told.append((record.name, record.levelno, record.getMessage()))
    root_handlers.addHandler(handler)
    limiter = log_repeats.install(RepeatLimiter(clock=clock))
    root_handlers.setLevel(logging.INFO)
    kafka = logging.getLogger("aiokafka")
    for second in range(5):  # then Kafka is back: no more lines of the kind
        clock.now = 1_000.0 + second
        kafka.error("Unable connect to node with id %s: %s", 1, "refused")
        kafka.warning("Got error produce response: %s", "NodeNotReadyError")
    clock.now = 1_030.0
    logging.getLogger("ingest.delivery").info("Kafka reachable again")  # within the minute: nothing told yet
    clock.now = 1_075.0
    logging.getLogger("ingest.delivery").info("spool drained")
    ours = [line for line in told if line[0] in ("aiokafka", "ingest.delivery")]  # not pytest's handlers' limiters
    assert ours[2:] == [
        ("ingest.delivery", logging.INFO, "Kafka reachable again"),
        ("aiokafka", logging.ERROR, "[4 more lines like 'Unable connect to node with id %s: %s' in the 75 s after "
                                    "the last one logged, not logged]"),
        ("aiokafka", logging.WARNING, "[4 more lines like 'Got error produce response: %s' in the 75 s after the "
                                      "last one logged, not logged]"),
        ("ingest.delivery", logging.INFO, "spool drained")]
    limiter.tell_dropped()  # what exit does: nothing left to tell
    assert len([line for line in told if line[0] in ("aiokafka", "ingest.delivery")]) == 6


def test_what_is_left_untold_is_told_at_exit(root_handlers):
    clock, told = Clock(), []
    handler = logging.Handler()
    handler.emit = lambda record: told.append(record.getMessage())
    root_handlers.addHandler(handler)
    limiter = log_repeats.install(RepeatLimiter(clock=clock))
    for _ in range(3):
        logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
    clock.now = 1_010.0
    log_repeats._tell_dropped_at_exit()  # registered with atexit
    assert told[0] == "Unable to update metadata from [1]"
    assert told.count("[2 more lines like 'Unable to update metadata from %s' in the 10 s after the last one logged, "
                      "not logged]") == 1


def test_every_handler_the_limiter_is_on_gets_the_same_lines_and_repeats_are_counted_once(root_handlers):
    clock, told = Clock(), {"console": [], "file": []}
    for name in told:
        handler = logging.Handler()
        handler.emit = lambda record, name=name: told[name].append(record.getMessage())
        root_handlers.addHandler(handler)
    log_repeats.install(RepeatLimiter(clock=clock))
    for _ in range(3):
        logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
    clock.now = 1_061.0
    logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
    assert told["console"] == told["file"] == [
        "Unable to update metadata from [1]",
        "Unable to update metadata from [1] [2 more like this in the last 61 s, not logged]"]
