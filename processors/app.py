"""The ``faust.App`` of the processor workers, built from settings; stages register themselves on it."""

from __future__ import annotations

import faust

from processors import (raw_events, recovery, roster_stage, roster_views, time_in_status_stage,
                        time_in_status_views)
from processors.consumer import BatchingConsumer
from processors.dead_letters import DeadLetterSender
from processors.faust_io import batches_in_flight
from processors.settings import ProcessorSettings
from schemas import topics as t


def broker_urls(bootstrap: str) -> list[str]:
    """``host1:9092,host2:9092`` -> Faust broker URLs."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def create_app(settings: ProcessorSettings) -> faust.App:
    """A worker app with every stage registered; several workers with the same ``app_id`` share the partitions."""
    settings.check()
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor or 1,
        processing_guarantee="at_least_once",
        # Do not wait on rebalance/shutdown for buffered events to be acknowledged: a batch being collected is never
        # acknowledged, so the wait hung until the worker was killed. Unacknowledged events are simply replayed by
        # the partition's next owner, and the rules make replays harmless.
        stream_wait_empty=False,
        producer_acks=-1,
        # A few ms of linger turn thousands of tiny produce requests per second into a few large ones.
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=256 * 1024,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_bind=settings.web_bind or settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        datadir=str(settings.data_dir),
        table_standby_replicas=settings.standby_replicas,
        web_enabled=True,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_ms / 3000),
        # offsets are committed on a timer only (not every N events): each commit first writes the changelog
        broker_commit_interval=settings.commit_interval_ms / 1000,
        broker_commit_every=1 << 62,
    )
    app.transport.Consumer = BatchingConsumer  # before Faust creates its consumer
    recovery.install(app)  # before Faust creates its recovery service
    batches_in_flight(app, settings)
    specs = {spec.name: spec for spec in t.pipeline_topics(settings.raw_topic, settings.partitions)}
    dead_letters = DeadLetterSender(app, specs[t.DEAD_LETTER])
    roster = roster_stage.register(app, settings, dead_letters)
    roster_views.register(app, roster)
    time_in_status = time_in_status_stage.register(app, settings)
    time_in_status_views.register(app, time_in_status)
    raw_events.register(app, settings, dead_letters, handlers=[roster, time_in_status])
    return app
