"""``onduty processor``: run one processor worker (roster and time-in-status stages) until Ctrl-C."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import socket
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "processor", help="run one processor worker; several share the work (distinct --web-port and --data-dir)"
    )
    parser.add_argument("--web-port", type=int, default=None,
                        help="query API port (ONDUTY_PROCESSOR_WEB_PORT, default 6066)")
    parser.add_argument("--web-host", default=None,
                        help="query API host, also the address other workers forward to (ONDUTY_PROCESSOR_WEB_HOST)")
    parser.add_argument("--web-bind", default=None,
                        help="address the query API listens on (ONDUTY_PROCESSOR_WEB_BIND, default: the web host)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="worker data directory (ONDUTY_PROCESSOR_DATA_DIR, default var/processor)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import faust

    from processors.app import create_app
    from processors.settings import ProcessorSettings

    settings = ProcessorSettings.from_env()
    overrides = {"web_port": args.web_port, "web_host": args.web_host, "web_bind": args.web_bind,
                 "data_dir": args.data_dir}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None}).check()
    prepare_data_dir(settings.data_dir)
    check_web_port_free(settings.web_bind or settings.web_host, settings.web_port)
    brokers = ensure_pipeline_topics(settings)
    if settings.replication_factor is None:
        settings = dataclasses.replace(settings, replication_factor=min(3, brokers))
    app = create_app(settings)
    ensure_internal_topics(app, settings)
    level = logging.getLevelName(logging.getLogger().level).lower()
    worker = _worker_class(faust.Worker)(app, loglevel=level if level != "notset" else "info", quiet=True)
    # No terminal spinner: at level WARNING and above Faust would drive it from a DEBUG-level root logger, so every
    # debug call of aiokafka and Faust built a log record (about 8% of a worker's CPU under load).
    worker.spinner = None
    # A worker allocates several short-lived objects per record (decoded events, records, table values) and keeps
    # large tables: with CPython's default young-generation threshold (700 allocations) the collector ran about
    # every 10 records and took a third of the worker's CPU in the processors benchmark. Collect the young
    # generation every 50,000 allocations, the older ones proportionally less often.
    gc.set_threshold(50_000, 20, 100)
    worker.execute_from_commandline()
    return 0


def prepare_data_dir(data_dir: Path) -> None:
    """Create the worker's data directory and make sure it can write there; else one line naming the setting
    (exit 2), not a traceback here or from Faust later."""
    from onduty.env import SettingsError

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise SettingsError(f"ONDUTY_PROCESSOR_DATA_DIR (--data-dir) {str(data_dir)!r} cannot hold the worker's "
                            f"data: {exc.strerror or exc}") from None


def check_web_port_free(host: str, port: int) -> None:
    """Refuse to start (one line, exit 2) when the query API's address is taken, instead of Faust's three
    tracebacks once the worker has joined the group: another worker on this machine needs its own port."""
    from onduty.env import SettingsError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the query API's server binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SettingsError(f"the query API cannot listen on {host}:{port} ({exc.strerror}); another worker on "
                                "this machine needs its own --web-port / ONDUTY_PROCESSOR_WEB_PORT") from None


def _worker_class(base: type) -> type:
    """Faust's worker class, keeping the limit on the Kafka client's repeated lines (``onduty.log_repeats``): mode
    replaces the root logger's handlers, and the limiter the ``onduty`` command put on them, when it sets up
    logging."""
    from onduty import log_repeats

    class Worker(base):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            log_repeats.install()

    return Worker


def ensure_pipeline_topics(settings) -> int:
    """Create missing pipeline topics before the worker subscribes (Faust ignores a missing source topic).

    Returns the number of brokers in the cluster.

    Only the raw topic's partition count must match the worker's: Faust's tables and re-key topics are
    co-partitioned with it. Other differences are reported and left to ``onduty topics``.
    """
    import asyncio
    import logging

    from onduty.env import env_str
    from onduty.topics_admin import ensure_topics
    from schemas.topics import REJECTED_AGENT_STATUS, pipeline_topics

    async def ensure() -> tuple[list, int]:
        from aiokafka.admin import AIOKafkaAdminClient

        specs = pipeline_topics(settings.raw_topic, settings.partitions,
                                rejected_topic=env_str("REJECTED_TOPIC", REJECTED_AGENT_STATUS))
        reports = await ensure_topics(settings.kafka_bootstrap, specs, replication_factor=settings.replication_factor)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            return reports, len((await admin.describe_cluster())["brokers"])
        finally:
            await admin.close()

    reports, brokers = asyncio.run(ensure())
    for report in reports:
        if report.problem and report.name == settings.raw_topic:
            raise SystemExit(
                f"raw topic {report.line()}: set ONDUTY_PARTITIONS to the raw topic's partition count, "
                "or the worker's tables would not be co-partitioned with it"
            )
        if report.problem:
            logging.getLogger(__name__).warning("topic %s", report.line())
    return brokers


def ensure_internal_topics(app, settings) -> None:
    """Create the workers' own re-key and changelog topics before subscribing.

    A consumer that subscribes to a topic that does not exist yet ignores it until its next metadata refresh
    (minutes): the call-center stages would sit idle after a fresh start.
    """
    import asyncio

    from onduty.topics_admin import ensure_topics
    from schemas.topics import TopicSpec

    names = sorted({name for channel in app.topics if channel.internal for name in channel.topics})
    specs = [TopicSpec(name, "delete", settings.partitions, description="internal re-key topic") for name in names]
    # Faust creates its changelog topics itself, but right before subscribing: a changelog topic not yet in the
    # metadata is ignored at assignment ("Ignoring missing topic") and writes to its table then stall the worker.
    specs += [TopicSpec(table.changelog_topic.get_topic_name(), "compact", settings.partitions,
                        description="table changelog") for table in app.tables.values()]
    asyncio.run(ensure_topics(settings.kafka_bootstrap, specs, replication_factor=settings.replication_factor))
