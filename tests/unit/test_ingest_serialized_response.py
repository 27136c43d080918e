"""The webhook's fixed answer, serialized once: the same bytes aiohttp writes for the same ``web.Response``.

Compared on the wire (raw sockets, so nothing normalises the bytes) for every kind of connection, with the
date as the only header that changes; and through the real app factory, several answers on one connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import jwt
import pytest
from aiohttp import web

import ingest.serialized_response as serialized_response
from ingest import IngestSettings, create_app
from ingest.serialized_response import SerializedAnswer
from ingest.testing import MemoryPublisher
from tests.samples import payload

ANSWER = SerializedAnswer(202, b'{"status":"accepted","kept_in":"kafka"}', "application/json")
REQUEST_HEADS = {
    "http/1.1 keep-alive": "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
    "http/1.1 close": "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab",
    "http/1.0": "POST {path} HTTP/1.0\r\nContent-Length: 2\r\n\r\nab",
    "http/1.0 keep-alive": "POST {path} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab",
}


async def serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


async def exchange(port: int, request: bytes, *, answers: int = 1, until: bytes = b"}") -> bytes:
    """Send ``request`` on a new connection; what came back once ``answers`` responses ending with ``until``
    arrived, or it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    received = b""
    try:
        while received.count(b"HTTP/1.") < answers or not received.endswith(until):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            received += chunk
    finally:
        writer.close()
    return received


def undated(response: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]+\r\n", b"\r\nDate: -\r\n", response)


def in_any_header_order(response: bytes) -> tuple[bytes, list[bytes], bytes]:
    head, _, body = undated(response).partition(b"\r\n\r\n")
    status_line, *headers = head.split(b"\r\n")
    return status_line, sorted(headers), body


def answering_both_ways(*, middlewares: tuple = ()) -> web.Application:
    """Answers ``/serialized`` with ``ANSWER``, ``/response`` with the same ``web.Response``."""
    async def as_serialized(request: web.Request) -> web.StreamResponse:
        await request.read()
        return ANSWER.response()

    async def as_response(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=202, body=ANSWER.body, content_type="application/json")

    app = web.Application(middlewares=middlewares)
    app.router.add_post("/serialized", as_serialized)
    app.router.add_post("/response", as_response)
    return app


async def ask_both_ways(port: int, head: str) -> tuple[bytes, bytes]:
    return (await exchange(port, head.format(path="/serialized").encode()),
            await exchange(port, head.format(path="/response").encode()))


@pytest.fixture
async def both_ways() -> AsyncIterator[Callable[[str], Awaitable[tuple[bytes, bytes]]]]:
    async for port in serve(answering_both_ways()):
        async def ask(head: str) -> tuple[bytes, bytes]:
            return await ask_both_ways(port, head)

        yield ask


@pytest.fixture
def written_as_serialized(monkeypatch) -> list[bytes]:
    """What ``SerializedAnswer.serialized`` gave (the single write), answer by answer."""
    given: list[bytes] = []

    def serialized(answer: SerializedAnswer) -> bytes:
        given.append(original(answer))
        return given[-1]

    original = SerializedAnswer.serialized
    monkeypatch.setattr(SerializedAnswer, "serialized", serialized)
    return given


@pytest.mark.parametrize("kind", REQUEST_HEADS)
async def test_the_bytes_are_those_aiohttp_writes_for_the_same_response(both_ways, kind, written_as_serialized):
    serialized, response = await both_ways(REQUEST_HEADS[kind])
    assert serialized.startswith(b"HTTP/1.") and serialized.endswith(ANSWER.body)
    assert undated(serialized) == undated(response)
    assert written_as_serialized == ([serialized] if kind == "http/1.1 keep-alive" else [])  # else aiohttp's way


CHANGES = {
    "a header added": lambda response: response.headers.add("X-Added", "yes"),
    "the content type": lambda response: setattr(response, "content_type", "text/plain"),
    "a cookie": lambda response: response.set_cookie("seen", "1"),
    "the status": lambda response: response.set_status(200),
    "the reason": lambda response: response.set_status(202, "Taken"),
    "keep-alive": lambda response: response.force_close(),
}


@pytest.mark.parametrize("change", CHANGES)
async def test_what_a_middleware_changes_is_written_as_aiohttp_writes_it(change, written_as_serialized):
    @web.middleware
    async def changing(request: web.Request, handler) -> web.StreamResponse:
        response = await handler(request)
        CHANGES[change](response)
        return response

    async for port in serve(answering_both_ways(middlewares=(changing,))):
        serialized, response = await ask_both_ways(port, REQUEST_HEADS["http/1.1 keep-alive"])
    assert written_as_serialized == []
    assert in_any_header_order(serialized) == in_any_header_order(response)  # aiohttp adds Content-Length later
    assert in_any_header_order(serialized) != in_any_header_order(ANSWER.serialized())  # the change shows


async def test_the_date_header_is_the_current_one(both_ways, monkeypatch):
    monkeypatch.setattr(serialized_response, "rfc822_formatted_time", lambda: "Mon, 30 Nov 2026 10:00:00 GMT")
    first, _ = await both_ways(REQUEST_HEADS["http/1.1 keep-alive"])
    monkeypatch.setattr(serialized_response, "rfc822_formatted_time", lambda: "Mon, 30 Nov 2026 10:00:01 GMT")
    second, _ = await both_ways(REQUEST_HEADS["http/1.1 keep-alive"])
    assert b"\r\nDate: Mon, 30 Nov 2026 10:00:00 GMT\r\n" in first
    assert b"\r\nDate: Mon, 30 Nov 2026 10:00:01 GMT\r\n" in second


async def test_a_head_request_gets_the_headers_without_the_body(written_as_serialized):
    async def as_serialized(request: web.Request) -> web.StreamResponse:
        return ANSWER.response()

    async def as_response(request: web.Request) -> web.StreamResponse:
        return web.Response(status=202, body=ANSWER.body, content_type="application/json")

    app = web.Application()
    app.router.add_route("HEAD", "/serialized", as_serialized)
    app.router.add_route("HEAD", "/response", as_response)
    head = "HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
    async for port in serve(app):
        answers = [await exchange(port, head.format(path=path).encode(), until=b"\r\n\r\n")
                   for path in ("/serialized", "/response")]
    assert written_as_serialized == []
    assert undated(answers[0]) == undated(answers[1])
    assert answers[0].startswith(b"HTTP/1.1 202 Accepted\r\n") and answers[0].endswith(b"\r\n\r\n")


async def test_response_prepare_handlers_are_honoured(written_as_serialized):
    """A handler that changes headers before they are sent: the answer takes aiohttp's way, with the change."""
    async def as_serialized(request: web.Request) -> web.StreamResponse:
        await request.read()
        return ANSWER.response()

    async def add_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Added"] = "yes"

    app = web.Application()
    app.router.add_post("/serialized", as_serialized)
    app.on_response_prepare.append(add_header)
    async for port in serve(app):
        answer = await exchange(port, REQUEST_HEADS["http/1.1 keep-alive"].format(path="/serialized").encode())
    assert written_as_serialized == []
    assert b"\r\nX-Added: yes\r\n" in answer and answer.endswith(ANSWER.body)
    assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n")


async def test_the_webhook_answers_each_request_on_a_kept_alive_connection(tmp_path: Path, written_as_serialized):
    secret = "serialized-answer-secret-0123456789abcdef"
    settings = IngestSettings(webhook_secrets=(secret,), raw_topic="test.raw", rejected_topic="test.rejected",
                              spool_dir=tmp_path / "spool")
    publisher = MemoryPublisher()
    requests = b""
    for agent in range(3):
        token = jwt.encode(payload(target={"id": 1000 + agent}), secret, algorithm="HS256").encode()
        requests += (b"POST /webhooks/dialpad/agent-status HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(token), token))
    async for port in serve(create_app(settings, publisher=publisher)):
        answers = await exchange(port, requests, answers=3)
    assert len(written_as_serialized) == 3
    assert answers.count(b"HTTP/1.1 202 Accepted\r\n") == 3
    assert answers.count(b'{"status":"accepted","kept_in":"kafka"}') == 3
    assert len(publisher.sent) == 3
