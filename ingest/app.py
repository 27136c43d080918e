"""The application factory: ``create_app(settings) -> web.Application``, one ``cleanup_ctx`` per client.

Start-up order: spool (recovered from disk), Kafka producer (may be unreachable: events then go to the
spool), drainer task, garbage-collector tuning. Shutdown runs them in reverse after aiohttp stopped accepting
and finished the requests in flight: restore the GC, stop the drainer, flush the producer, sync and close the
spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ingest import keys
from ingest.delivery import Delivery
from ingest.errors import ConfigurationError, IngestError
from ingest.handlers import setup_routes
from ingest.intake import Intake
from ingest.metrics import IngestMetrics
from ingest.publisher import KafkaPublisher, Publisher
from ingest.settings import IngestSettings
from ingest.spool import Spool
from ingest.verification import TokenVerifier

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings, *, publisher: Publisher | None = None) -> web.Application:
    """Build the service. ``publisher`` replaces Kafka (unit tests); by default an aiokafka producer."""
    settings.check()
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[keys.SETTINGS] = settings
    verifier = TokenVerifier(settings.webhook_secrets, allow_unsigned=settings.allow_unsigned,
                             leeway_s=settings.jwt_leeway_s)
    app[keys.INTAKE] = Intake(verifier, settings.raw_topic, settings.rejected_topic)
    app[keys.METRICS] = IngestMetrics()
    app.cleanup_ctx.append(spool_ctx)
    app.cleanup_ctx.append(_publisher_ctx(publisher))
    app.cleanup_ctx.append(drainer_ctx)
    app.cleanup_ctx.append(gc_ctx)
    setup_routes(app)
    return app


async def spool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes, segment_bytes=settings.spool_segment_bytes)
    try:
        await asyncio.get_running_loop().run_in_executor(None, spool.open)
    except OSError as exc:  # not a directory, no permission, ...: say which setting
        raise ConfigurationError(f"ONDUTY_SPOOL_DIR={str(settings.spool_dir)!r} cannot hold the spool: {exc}") from exc
    app[keys.SPOOL] = spool
    yield
    await spool.close()
    log.info("ingest stopped: spool synced, %d records waiting for Kafka", spool.pending_records)


def _publisher_ctx(publisher: Publisher | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS]
        client = publisher or KafkaPublisher(settings.kafka_bootstrap,
                                             publish_deadline_s=settings.publish_deadline_ms / 1000,
                                             request_timeout_ms=settings.kafka_request_timeout_ms)
        await client.start()
        app[keys.PUBLISHER] = client
        yield
        await client.stop(settings.shutdown_timeout_ms / 1000)

    return publisher_ctx


async def drainer_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, spool, publisher = app[keys.SETTINGS], app[keys.SPOOL], app[keys.PUBLISHER]
    delivery = Delivery(publisher, spool, app[keys.METRICS], deadline_s=settings.publish_deadline_ms / 1000)
    delivery.kafka_up = publisher.started and spool.is_empty()
    app[keys.DELIVERY] = delivery
    app[keys.DRAINER] = task = asyncio.create_task(delivery.drain_forever(), name="spool-drainer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, IngestError):  # a damaged spool was logged already
        await task


async def gc_ctx(app: web.Application) -> AsyncIterator[None]:
    """Fewer, cheaper cyclic-GC passes while serving (process-wide; restored at shutdown).

    Everything built at start-up (modules, the app, the clients) lives as long as the process: frozen, later
    collections skip it. The youngest generation is collected after ``gc_young_threshold`` allocations instead
    of 700: each of its collections walks the objects of every request in flight, whatever their number.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(app[keys.SETTINGS].gc_young_threshold, *before[1:])
    yield
    gc.set_threshold(*before)
    gc.unfreeze()
