"""A fixed answer serialized once: ``SerializedResponse`` writes its status line, headers and body as one buffer.

Every accepted webhook gets the same answer (202 and one of two bodies). Built as a ``web.Response``, aiohttp
would check and fill its headers, format the status line and serialize them for every request: at saturation
about a seventh of the service's CPU went there. Here all of it but the ``Date`` header is serialized once per
answer, and the whole response is rebuilt once a second, when the date changes.

The bytes are what ``web.Response(status=..., body=..., content_type=...)`` writes on a keep-alive HTTP/1.1
connection, the usual webhook sender's. Anything else (HTTP/1.0, ``Connection: close``, an application with
``on_response_prepare`` handlers, which may change headers) takes aiohttp's own way with the same headers.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from multidict import CIMultiDict


class SerializedAnswer:
    """One fixed answer (status, content type, body); ``response()`` makes a response of it per request."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status, self.body = status, body
        self.headers = CIMultiDict({hdrs.CONTENT_TYPE: content_type, hdrs.CONTENT_LENGTH: str(len(body))})
        reason = web.StreamResponse(status=status).reason
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        self._before_date = f"HTTP/1.1 {status} {reason}\r\n{head}Date: ".encode("latin-1")
        self._after_date = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode("latin-1") + body
        self._date, self._serialized = "", b""

    def serialized(self) -> bytes:
        """The whole response for a keep-alive HTTP/1.1 connection, dated now (aiohttp's cached date)."""
        date = rfc822_formatted_time()
        if date != self._date:
            self._date, self._serialized = date, self._before_date + date.encode("latin-1") + self._after_date
        return self._serialized

    def response(self) -> SerializedResponse:
        return SerializedResponse(self)


class SerializedResponse(web.StreamResponse):
    """A ``StreamResponse`` of a ``SerializedAnswer``: one write of its bytes, or aiohttp's way where they would
    not be right (see the module)."""

    _send_headers_immediately = False  # aiohttp's way: the headers go out with the body, as a Response's

    def __init__(self, answer: SerializedAnswer) -> None:
        super().__init__(status=answer.status, _real_headers=answer.headers.copy())
        self._answer = answer
        self._as_serialized = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        if request.version != HttpVersion11 or not request.keep_alive or self._has_prepare_hooks(request):
            return await super().prepare(request)
        self._as_serialized, self._keep_alive, self._req = True, True, request
        self._payload_writer = request._payload_writer
        return self._payload_writer

    @staticmethod
    def _has_prepare_hooks(request: web.BaseRequest) -> bool:
        match_info = getattr(request, "match_info", None)  # a web.Request has one; a low-level BaseRequest not
        return match_info is not None and any(app.on_response_prepare for app in match_info.apps)

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        assert not data, f"a serialized answer takes no more data, got {data!r}"
        writer = self._payload_writer
        assert writer is not None, "Response has not been started"
        if not self._as_serialized:
            await super().write_eof(self._answer.body)
            return
        await writer.write_eof(self._answer.serialized())
        self._eof_sent, self._req, self._payload_writer = True, None, None
        self._body_length = writer.output_size
