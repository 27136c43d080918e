"""A fixed answer serialized once: ``SerializedResponse`` writes its status line, headers and body as one buffer.

Every accepted webhook gets the same answer (202 and one of two bodies). Built as a ``web.Response``, aiohttp
would check and fill its headers, format the status line and serialize them for every request: without that,
the service used 15–18% less CPU per request at saturation (``docs/PERFORMANCE.md``). Here all of it but the
``Date`` header is serialized once per answer, and the whole response is rebuilt once a second, when the date
changes.

The bytes are what ``web.Response(status=..., body=..., content_type=...)`` writes on a keep-alive HTTP/1.1
connection, the usual webhook sender's. Anything else takes aiohttp's own way: HTTP/1.0, ``Connection: close``,
``HEAD``, an application with ``on_response_prepare`` handlers, a response whose status, headers, cookies,
compression or keep-alive were changed (by a middleware, say).
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import must_be_empty_body, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy, getversion


class SerializedAnswer:
    """One fixed answer (status, content type, body); ``response()`` makes a response of it per request."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status, self.body = status, body
        self.reason = web.StreamResponse(status=status).reason
        self.headers = CIMultiDictProxy(CIMultiDict({hdrs.CONTENT_TYPE: content_type,
                                                     hdrs.CONTENT_LENGTH: str(len(body))}))  # as serialized
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        self._before_date = f"HTTP/1.1 {status} {self.reason}\r\n{head}Date: ".encode("latin-1")
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
        # What StreamResponse.__init__ sets (the rest are class defaults), without its 1.4 µs: one per request.
        self._state, self._headers = {}, answer.headers.copy()
        self._status, self._reason = answer.status, answer.reason
        self._answer = answer
        self._headers_version = getversion(self._headers)
        self._as_serialized = False

    def _as_answered(self) -> bool:
        """Nothing changed the answer: not its status, headers, cookies, compression, chunking or keep-alive."""
        answer = self._answer
        return (getversion(self._headers) == self._headers_version and self._status == answer.status
                and self._reason == answer.reason and not self._cookies and not self._compression
                and not self._chunked and self._keep_alive is None)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        if (request.version != HttpVersion11 or not request.keep_alive or not self._as_answered()
                or must_be_empty_body(request.method, self._status) or self._has_prepare_hooks(request)):
            return await super().prepare(request)
        self._as_serialized, self._keep_alive, self._req = True, True, request
        self._payload_writer = request._payload_writer
        return self._payload_writer

    @staticmethod
    def _has_prepare_hooks(request: web.BaseRequest) -> bool:
        match_info = getattr(request, "match_info", None)  # a web.Request has one; a low-level BaseRequest not
        if match_info is not None:
            for app in match_info.apps:
                if app.on_response_prepare:
                    return True
        return False

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        assert not data, f"a serialized answer takes no more data, got {data!r}"
        writer = self._payload_writer
        assert writer is not None, "Response has not been started"
        if not self._as_serialized:  # aiohttp's way: as Response.write_eof
            await super().write_eof(b"" if self._must_be_empty_body else self._answer.body)
            return
        await writer.write_eof(self._answer.serialized())
        self._eof_sent, self._req, self._payload_writer = True, None, None
        self._body_length = writer.output_size
