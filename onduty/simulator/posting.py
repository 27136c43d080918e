"""Post deliveries to an ingest URL as Dialpad does: HS256-signed webhooks, retried only on 5xx.

Pacing: a fixed ``rate`` (requests per second), the original event-time pacing compressed by ``speed``
(``speed=3600`` replays an hour per second), or as fast as ``concurrency`` connections allow. Every run is bounded
by the number of deliveries and, optionally, by ``max_seconds``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import jwt
import msgspec

from onduty.simulator.traffic import RETRY_OFFSETS_MS, Delivery

log = logging.getLogger(__name__)

#: Dialpad waits 5 s for an answer.
REQUEST_TIMEOUT_S = 5.0
#: Waits before each retry of a 5xx answer (Dialpad: 0.1 / 0.2 / 0.4 / 0.8 s).
RETRY_WAITS_S = tuple((b - a) / 1000 for a, b in zip((0, *RETRY_OFFSETS_MS), RETRY_OFFSETS_MS))
#: Timeouts and connection failures get at most two quick retries.
CONNECTION_RETRIES = 2

OnResponse = Callable[[Delivery, int | None, float, float], None]
"""Called after each delivery's last attempt: (delivery, HTTP status or None, start and end on ``time.monotonic``)."""


@dataclass(frozen=True)
class PostSettings:
    url: str
    secret: str | None
    """HS256 secret; ``None`` posts plain JSON (only accepted by an ingest that allows unsigned input)."""
    concurrency: int = 64
    rate_per_s: float | None = None
    speed: float | None = None
    """Event-time compression: a delivery is sent ``(send_ms - first send_ms) / speed`` after the start."""
    retry: bool = True
    max_seconds: float | None = None
    progress: TextIO | None = sys.stderr


@dataclass
class PostReport:
    """What happened: final status codes, errors, retries and per-request latencies."""

    total: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    """Per error kind, the first one's message (e.g. which host could not be reached)."""
    retries: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def done(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items())) or "none"
        failed = sum(self.errors.values())
        lines = [
            f"posted {self.done} of {self.total} deliveries in {self.elapsed_s:.1f} s "
            f"({self.done / self.elapsed_s if self.elapsed_s else 0:.0f}/s)"
            + (f": {self.done - failed} answered, {failed} never answered" if failed else "")
            + (" — stopped at the time limit" if self.stopped_early else ""),
            f"status codes: {codes}",
            f"latency ms: p50 {self.percentile_ms(0.5):.1f}, p99 {self.percentile_ms(0.99):.1f}, "
            f"retries {self.retries}",
        ]
        if self.errors:
            lines.append("errors: " + ", ".join(f"{name}: {n} (the first: {self.error_examples.get(name, name)})"
                                                for name, n in self.errors.most_common()))
        return "\n".join(lines)


_json = msgspec.json.Encoder()


def body_for(payload: dict[str, Any], secret: str | None) -> tuple[bytes, str]:
    """The request body and its Content-Type: a compact HS256 JWT, or plain JSON without a secret."""
    if secret is None:
        return _json.encode(payload), "application/json"
    return jwt.encode(payload, secret, algorithm="HS256").encode(), "application/jwt"


def dated_too_far_ahead(deliveries: list[Delivery], settings: PostSettings, now_ms: int, max_ahead_ms: int) -> int:
    """How many deliveries would carry a ``date`` more than ``max_ahead_ms`` ahead of the wall clock when they are
    posted (from ``now_ms``, at the settings' pace): the processors refuse those as implausible."""
    due = _due_times(deliveries, settings) or [0.0] * len(deliveries)
    return sum(1 for d, after_s in zip(deliveries, due)
               if isinstance(d.payload.get("date"), int) and d.payload["date"] > now_ms + after_s * 1000 + max_ahead_ms)


def _due_times(deliveries: list[Delivery], settings: PostSettings) -> list[float] | None:
    if settings.rate_per_s:
        return [i / settings.rate_per_s for i in range(len(deliveries))]
    if settings.speed and deliveries:
        first = deliveries[0].send_ms
        return [(d.send_ms - first) / 1000 / settings.speed for d in deliveries]
    return None


async def _deliver(
    session: aiohttp.ClientSession, url: str, body: bytes, content_type: str, report: PostReport, retry: bool
) -> int | None:
    server_retries = 0
    connection_retries = 0
    while True:
        try:
            async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if retry and connection_retries < CONNECTION_RETRIES:
                connection_retries += 1
                report.retries += 1
                await asyncio.sleep(RETRY_WAITS_S[0])
                continue
            report.errors[type(exc).__name__] += 1
            report.error_examples.setdefault(type(exc).__name__, str(exc) or repr(exc))
            return None
        if status >= 500 and retry and server_retries < len(RETRY_WAITS_S):
            await asyncio.sleep(RETRY_WAITS_S[server_retries])
            server_retries += 1
            report.retries += 1
            continue
        report.statuses[status] += 1
        return status


async def _progress(report: PostReport, out: TextIO, started: float) -> None:
    while True:
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        codes = " ".join(f"{code}:{n}" for code, n in sorted(report.statuses.items()))
        errors = sum(report.errors.values())
        out.write(f"\r{report.done}/{report.total} ({100 * report.done / max(report.total, 1):.0f}%) "
                  f"{report.done / elapsed:.0f}/s {codes}" + (f" errors:{errors}" if errors else "") + "   ")
        out.flush()


async def post_deliveries(
    deliveries: Iterable[Delivery], settings: PostSettings, on_response: OnResponse | None = None
) -> PostReport:
    """Post every delivery (bounded by ``settings.max_seconds``); return the report."""
    items = list(deliveries)
    due = _due_times(items, settings)
    report = PostReport(total=len(items))
    next_index = itertools.count()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    started = time.monotonic()
    deadline = started + settings.max_seconds if settings.max_seconds else None

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            index = next(next_index)
            if index >= len(items):
                return
            if due is not None:
                wait = started + due[index] - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if deadline is not None and time.monotonic() > deadline:
                report.stopped_early = True
                return
            delivery = items[index]
            body, content_type = body_for(delivery.payload, settings.secret)
            begin = time.monotonic()
            status = await _deliver(session, settings.url, body, content_type, report, settings.retry)
            end = time.monotonic()
            report.latencies_ms.append((end - begin) * 1000)
            if on_response is not None:
                on_response(delivery, status, begin, end)

    progress = None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if settings.progress is not None:
            progress = asyncio.create_task(_progress(report, settings.progress, started))
        try:
            await asyncio.gather(*(worker(session) for _ in range(max(1, settings.concurrency))))
        finally:
            if progress is not None:
                progress.cancel()
                settings.progress.write("\n")  # type: ignore[union-attr]
    report.elapsed_s = time.monotonic() - started
    log.info("posted %d deliveries to %s", report.done, settings.url)
    return report
