"""The encoding of what only the workers read: table changelogs and internal re-key topics, as MessagePack.

Derived topics are JSON, for consumers in any language (``schemas``). What the workers write for themselves, the
tables' changelogs and the re-key topics between stages, uses msgspec's MessagePack instead: a time-in-status
timeline of a few kilobytes encodes about four times faster (its accumulator keys are JSON strings, whose quotes
JSON has to escape), and decodes faster on recovery. Every table value is encoded once per offset commit per
changed key, and every re-keyed record once, which made JSON several percent of a worker's CPU.

Values written as JSON by earlier versions are still read: a JSON document starts with ``{``, ``[`` or white
space, never the first byte of a MessagePack map or array (the encodings of a Struct or a list).
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.msgpack.Encoder()

_JSON_FIRST_BYTES = frozenset(b"{[ \t\r\n")


def encode_internal(value: Any) -> bytes:
    """A table value, or an internal topic's record value, as the workers write it."""
    return _encoder.encode(value)


class InternalDecoder:
    """Decodes values written by ``encode_internal`` (or as JSON by earlier versions) into ``type``.

    Raises ``msgspec.DecodeError`` or ``msgspec.ValidationError``, with the path of the faulty field, when a value
    does not fit the type.
    """

    def __init__(self, type: Any) -> None:
        self._msgpack = msgspec.msgpack.Decoder(type)
        self._json = msgspec.json.Decoder(type)

    def decode(self, raw: bytes) -> Any:
        if raw and raw[0] in _JSON_FIRST_BYTES:
            return self._json.decode(raw)
        return self._msgpack.decode(raw)
