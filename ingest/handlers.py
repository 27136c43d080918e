"""HTTP handlers: read, call the core, answer. Domain errors map to statuses here and nowhere else.

202 means the event is durable (acknowledged by Kafka or fsync'd in the spool). 401/413/422 are final
(Dialpad never retries a 4xx); 503 only when the event could not be kept, so Dialpad retries it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from ingest import keys
from ingest.errors import BodyTooLarge, IngestError, InvalidEvent, SpoolFull, VerificationError
from ingest.serialized_response import SerializedAnswer

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/dialpad/agent-status"
_json = msgspec.json.Encoder()
_ACCEPTED = {mode: SerializedAnswer(202, _json.encode({"status": "accepted", "kept_in": mode}), "application/json")
             for mode in ("kafka", "spool")}


def _error(status: int, error: str, detail: str, **extra: object) -> web.Response:
    body = {"error": error, "detail": detail, **{k: v for k, v in extra.items() if v is not None}}
    return web.Response(status=status, body=_json.encode(body), content_type="application/json")


def webhook_receiver(app: web.Application) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``POST`` handler of ``app``, with the settings and the intake looked up once (``request.app`` and
    two application lookups less per request); the delivery is looked up per request, as it exists only once
    the service started."""
    limit, intake = app[keys.SETTINGS].max_body_bytes, app[keys.INTAKE]

    async def receive_agent_status(request: web.Request) -> web.Response:
        """``POST /webhooks/dialpad/agent-status``: verify, validate, keep, answer."""
        delivery = app[keys.DELIVERY]
        received_ms = time.time_ns() // 1_000_000
        try:
            length = request.content_length
            if length is not None and length > limit:
                raise BodyTooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
            content = request.content
            if content.is_eof():  # the whole body came with the headers (a webhook's usual few hundred bytes)
                body = content.read_nowait()  # what read() returns, without its two awaits, bytearray and copy
                if len(body) > limit:  # a compressed body is counted decompressed, as read() counts it
                    raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
            else:
                try:
                    body = await request.read()  # not in a coroutine of ours: one frame less per request
                except web.HTTPRequestEntityTooLarge:
                    raise BodyTooLarge(f"body exceeds the limit of {limit} bytes") from None
            prepared = await intake.submit(body, received_ms)  # with the other bodies of this loop iteration
            outcome = await delivery.keep(prepared.record)
            if prepared.invalid is not None:  # authentic, refused by the schema: kept on the rejected topic
                raise prepared.invalid
        except IngestError as exc:
            return _error_response(exc, delivery.metrics)
        delivery.metrics.requests[outcome] += 1
        return _ACCEPTED["kafka" if outcome == "published" else "spool"].response()

    return receive_agent_status


def _error_response(exc: IngestError, metrics) -> web.Response:
    if isinstance(exc, VerificationError):
        metrics.requests["unauthorized"] += 1
        metrics.verification_failures[exc.reason] += 1
        log.warning("webhook refused (401, %s): %s", exc.reason, exc.detail)
        return _error(401, f"verification_failed:{exc.reason}", exc.detail)
    if isinstance(exc, BodyTooLarge):
        metrics.requests["too_large"] += 1
        return _error(413, "body_too_large", str(exc))
    if isinstance(exc, InvalidEvent):
        metrics.requests["invalid"] += 1
        log.warning("authentic event failed validation (422, kept on the rejected topic): %s at %s",
                    exc.message, exc.path)
        return _error(422, "invalid_event", exc.message, path=exc.path)
    if isinstance(exc, SpoolFull):
        metrics.requests["unavailable"] += 1
        log.error("event not kept (503, the sender will retry): %s", exc)
        return _error(503, "unavailable", str(exc))
    raise exc


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Kafka answers (mode ``kafka``) or the spool is writable and has room (mode ``spool``); never
    while the spool drainer has stopped (what is spooled would not reach Kafka)."""
    app = request.app
    delivery, spool, drainer = app[keys.DELIVERY], app[keys.SPOOL], app[keys.DRAINER]
    if drainer.done():  # it stops only on a damaged spool (logged): what is spooled would never reach Kafka
        return web.json_response({"status": "not ready: the spool drainer stopped (see the log)", **_spool_body(spool)},
                                 status=503)
    if await delivery.check_kafka():
        return web.json_response({"status": "ready", "mode": "kafka"})
    body = _spool_body(spool)
    if spool.write_error is not None and not await asyncio.get_running_loop().run_in_executor(None,
                                                                                              spool.probe_writable):
        return web.json_response({"status": "not ready: Kafka unreachable and the spool is not writable "
                                            f"({spool.write_error})", **body}, status=503)
    if spool.has_room(app[keys.SETTINGS].max_body_bytes):  # room for one more of the largest events
        return web.json_response({"status": "ready", **body})
    return web.json_response({"status": "not ready: Kafka unreachable and the spool is full", **body}, status=503)


def _spool_body(spool) -> dict[str, object]:
    return {"mode": "spool", "spool_records": spool.pending_records, "spool_bytes": spool.pending_bytes}


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    app = request.app
    text = app[keys.METRICS].render(app[keys.SPOOL], app[keys.DELIVERY].kafka_up)
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


def setup_routes(app: web.Application) -> None:
    app.router.add_post(WEBHOOK_PATH, webhook_receiver(app))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
