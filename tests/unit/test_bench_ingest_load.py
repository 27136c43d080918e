"""The ingest load check (bench/ingest_load.py): it finds the local broker it pins, and its paced load counts
latencies from the schedule; a round compares this tree with another revision."""

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from bench import ingest_load
from bench.ingest_load import URL_PATH, content_length, latency_origin, run_paced_load, server_properties


def test_the_broker_is_found_by_its_server_properties_not_by_the_log4j2_option():
    command = [b"java", b"-Xmx1G", b"-Dlog4j2.configurationFile=/tmp/onduty-kafka-x/log4j2.properties",
               b"-cp", b"/jars/*", b"kafka.Kafka", b"/tmp/onduty-kafka-x/server.properties"]
    assert server_properties(command) == [Path("/tmp/onduty-kafka-x/server.properties")]


# ----- the paced (open-loop) load: where latencies count from, and that a server falling behind shows ---------

def test_a_request_sent_late_because_the_server_was_behind_counts_from_when_it_was_due():
    # the previous answer came at 1.030, after this request was due (1.010): the server kept it waiting
    assert latency_origin(due=1.010, sent=1.030, previous_answered=1.030) == 1.010


def test_a_request_whose_connection_was_free_counts_from_when_it_was_sent():
    # a timer that woke 0.8 ms late is the generator's delay, not the server's
    assert latency_origin(due=1.010, sent=1.0108, previous_answered=1.002) == 1.0108


def test_content_length_is_read_from_the_response_head_whatever_its_case():
    assert content_length(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 41") == 41
    assert content_length(b"HTTP/1.1 202 Accepted\r\ncontent-length:7") == 7
    assert content_length(b"HTTP/1.1 204 No Content\r\nServer: x") == 0


async def _serve(handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_post(URL_PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


@pytest.mark.timeout(60)
async def test_a_server_that_keeps_up_answers_the_offered_rate():
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=b'{"status":"accepted"}')

    runner, port = await _serve(accept)
    try:
        result = await run_paced_load(port, [b"token-a", b"token-b"], rate=200, connections=8, seconds=2,
                                      warmup_s=0.5)
    finally:
        await runner.cleanup()
    assert result["statuses"] == {"202": result["count"]}
    assert 360 <= result["count"] <= 440  # the requests due in the measured 2 s
    assert result["rps"] >= 0.85 * 200
    assert result["p50_ms"] < 100


@pytest.mark.timeout(60)
async def test_a_server_that_falls_behind_shows_in_the_rate_and_in_latencies_counted_from_the_schedule():
    async def slow(request: web.Request) -> web.Response:  # 20 answers per second per connection at most
        await request.read()
        await asyncio.sleep(0.05)
        return web.Response(status=202, body=b"{}")

    runner, port = await _serve(slow)
    try:  # 100/s offered on 2 connections: each is due a request every 20 ms and answers one per 50 ms
        result = await run_paced_load(port, [b"token"], rate=100, connections=2, seconds=1.5, warmup_s=0.2)
    finally:
        await runner.cleanup()
    assert result["rps"] <= 0.5 * 100
    # counted from when each was sent, every latency would be about 50 ms; from the schedule, the wait grows
    assert result["p99_ms"] > 400
    assert result["p50_ms"] > 200


def test_a_round_compares_this_trees_cpu_per_request_with_the_other_revisions_closed_loop_and_paced():
    def scenario(rps: float, server_cpu: float, p99_ms: float = 10.0, offered_rps: float | None = None) -> dict:
        return {"rps": rps, "server_cpu": server_cpu, "p50_ms": 5.0, "p99_ms": p99_ms,
                **({"offered_rps": offered_rps} if offered_rps is not None else {})}

    results = {"bare": scenario(8000, 1.0), "full": scenario(5000, 1.0), "full@abc1234": scenario(4000, 1.0),
               "paced": scenario(300, 0.30, offered_rps=300), "paced@abc1234": scenario(300, 0.36, offered_rps=300)}
    summary = ingest_load.summarise(results, "full@abc1234")
    assert summary["versus_cpu"] == pytest.approx(0.8)  # 200 µs against 250 µs per request
    assert summary["versus_paced_cpu"] == pytest.approx(0.30 / 0.36)
    assert summary["paced_kept_up"] == 1.0
    del results["paced@abc1234"]  # paced at a share of the bare rate: only this tree is paced
    assert "versus_paced_cpu" not in ingest_load.summarise(results, "full@abc1234")
