"""Posting deliveries like Dialpad: HS256-signed bodies, 5xx retried, 4xx not, status codes summarised."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from aiohttp import web

from onduty.simulator import SimulationConfig, generate
from onduty.simulator.posting import PostSettings, post_deliveries

SECRET = "a-test-secret-of-at-least-32-bytes!"


@pytest.fixture
async def receiver():
    """A webhook receiver that verifies each token, answers 503 to the first 5 requests, refuses 'busy'."""
    received: list[dict] = []
    failed: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        claims = jwt.decode(body, SECRET, algorithms=["HS256"])
        if claims["on_duty_status"] == "busy":
            return web.Response(status=422)
        if len(failed) < 5:
            failed.append(body)
            return web.Response(status=503)
        received.append(claims)
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", received, failed
    await runner.cleanup()


async def test_posts_signed_payloads_retries_5xx_and_summarises_status_codes(receiver):
    url, received, failed = receiver
    deliveries = generate(SimulationConfig(agents=3, duration_ms=3_600_000, seed=2)).deliveries
    busy = sum(1 for d in deliveries if d.payload["on_duty_status"] == "busy")
    responses = []
    report = await post_deliveries(deliveries, PostSettings(url, SECRET, concurrency=8, progress=None),
                                   on_response=lambda d, status, start, end: responses.append(status))
    assert report.statuses == ({202: len(deliveries) - busy, 422: busy} if busy else {202: len(deliveries)})
    assert report.retries == len(failed) == 5
    assert sorted(map(str, received)) == sorted(str(d.payload) for d in deliveries
                                                if d.payload["on_duty_status"] != "busy")
    assert len(responses) == len(deliveries)
    assert "202: " in report.summary()


async def test_rate_and_time_limit_bound_a_run(receiver):
    url, received, _ = receiver
    deliveries = generate(SimulationConfig(agents=20, duration_ms=3_600_000, seed=2)).deliveries
    report = await post_deliveries(deliveries, PostSettings(url, SECRET, rate_per_s=50, max_seconds=0.5,
                                                            progress=None))
    assert report.stopped_early
    assert 10 <= report.done <= 40


async def test_speed_keeps_the_event_time_pacing_compressed(receiver):
    from onduty.simulator import Delivery

    url, received, _ = receiver
    base = 1_740_960_000_000
    deliveries = [Delivery(base + i * 1000, {**generate(SimulationConfig(agents=1, duration_ms=3_600_000,
                                                                         seed=2)).events[0].payload, "date": base + i})
                  for i in range(11)]  # 10 s of event time
    started = asyncio.get_running_loop().time()
    report = await post_deliveries(deliveries, PostSettings(url, SECRET, speed=20, progress=None))
    elapsed = asyncio.get_running_loop().time() - started
    assert report.statuses == {202: 11}  # the first five answered 503 once, then retried like Dialpad
    assert 0.45 <= elapsed < 2.0  # 10 s / 20


def test_traffic_dated_beyond_the_plausibility_bound_when_posted_is_counted():
    from onduty.simulator.posting import PostSettings, dated_too_far_ahead
    from onduty.simulator.traffic import Delivery

    now, minute = 1_800_000_000_000, 60_000
    deliveries = [Delivery(now + i * 10 * minute, {"date": now + i * 10 * minute}) for i in range(7)]  # 0..60 min
    as_fast_as_possible = PostSettings(url="http://x", secret=None)
    assert dated_too_far_ahead(deliveries, as_fast_as_possible, now, 15 * minute) == 5  # 20, 30 ... 60 min ahead
    real_time = PostSettings(url="http://x", secret=None, speed=1.0)
    assert dated_too_far_ahead(deliveries, real_time, now, 15 * minute) == 0  # each posted when its date comes
    assert dated_too_far_ahead(deliveries, as_fast_as_possible, now + 60 * minute, 15 * minute) == 0  # the past


async def test_a_receiver_that_cannot_be_reached_is_named_in_the_summary():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    deliveries = generate(SimulationConfig(agents=2, duration_ms=600_000, seed=2)).deliveries[:3]
    report = await post_deliveries(deliveries, PostSettings(f"http://127.0.0.1:{port}/hook", SECRET, retry=False,
                                                            progress=None))
    summary = report.summary()
    assert "posted 3 of 3 deliveries" in summary and ": 0 answered, 3 never answered" in summary
    assert "ClientConnectorError: 3 (the first: Cannot connect to host 127.0.0.1:" in summary
