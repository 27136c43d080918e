"""How table values are written to their changelogs: MessagePack, read back as MessagePack or JSON.

Changelogs are internal to the workers (no other system reads them), so they use msgspec's MessagePack, not the
JSON of the derived topics: a time-in-status timeline of a few kilobytes encodes about four times faster (its
accumulator keys are JSON strings, whose quotes JSON has to escape), and recovers faster too. Every value is
encoded once per offset commit per changed key, which made JSON a few percent of a worker's CPU.

Changelogs written as JSON by earlier versions are still read: a JSON document starts with ``{`` or ``[``, which
MessagePack never uses as the first byte of a map or an array (the encodings of a Struct).
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.msgpack.Encoder()

_JSON_FIRST_BYTES = frozenset(b"{[ \t\r\n")


def encode_table_value(value: msgspec.Struct) -> bytes:
    """A table value as its changelog record's value."""
    return _encoder.encode(value)


class TableValueDecoder:
    """Decodes a table's changelog values into its Struct type, whichever format wrote them.

    Raises ``msgspec.DecodeError`` or ``msgspec.ValidationError``, with the path of the faulty field, when a value
    does not fit the type.
    """

    def __init__(self, struct: type[msgspec.Struct]) -> None:
        self._msgpack = msgspec.msgpack.Decoder(struct)
        self._json = msgspec.json.Decoder(struct)

    def decode(self, raw: bytes) -> Any:
        if raw and raw[0] in _JSON_FIRST_BYTES:
            return self._json.decode(raw)
        return self._msgpack.decode(raw)
