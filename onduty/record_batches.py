"""Appending ready records to aiokafka record batches through its C record-batch builder.

aiokafka's ``BatchBuilder.append`` is a Python wrapper around that builder (keyword arguments, serializers, a
default headers list) that costs about a third of each append. The ingest's batches and the workers' outboxes
append records that are bytes already, many per batch, so they call the builder itself and keep the count
``append`` keeps (``BatchBuilder``'s relative offset, from which the batch's record count and the idempotent
producer's sequence numbers come). This relies on the internals of aiokafka 0.14's ``BatchBuilder`` (``_builder``,
``_relative_offset``, ``_closed``; the version is pinned); any other batch object goes through its ``append``.
``tests/unit/test_record_batches.py`` checks that both ways build the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.producer.message_accumulator import BatchBuilder

_NO_HEADERS: list = []  # never changed: the C builder wants a list


def append_record(batch: BatchBuilder, key: bytes | None, value: bytes | None, timestamp_ms: int | None,
                  headers: Sequence[tuple[str, bytes]] | None = None) -> bool:
    """Append one record; False when it does not fit (the batch is closed then, as ``append`` leaves it) or the
    batch was closed already."""
    if type(batch) is not BatchBuilder:
        return batch.append(key=key, value=value, timestamp=timestamp_ms, headers=list(headers or ())) is not None
    if batch._closed:  # noqa: SLF001
        return False
    if headers is None:
        headers = _NO_HEADERS
    elif type(headers) is not list:
        headers = list(headers)
    if batch._builder.append(batch._relative_offset, timestamp_ms, key, value, headers) is None:  # noqa: SLF001
        batch.close()
        return False
    batch._relative_offset += 1  # noqa: SLF001
    return True
