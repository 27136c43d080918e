"""The durable spool: where an event waits, on local disk, while Kafka is slow or down.

Layout: append-only segment files ``<seq>.spool`` in one directory, and a ``cursor`` file naming the first
record not yet acknowledged by Kafka (segment and byte offset). A record is framed as
``length (u32 LE) | crc32 (u32 LE) | msgpack(OutboundRecord)``.

* ``append`` returns once the record is on disk (written and ``fsync``'d). Appends arriving while a sync
  runs are written together by the next one (group commit): one ``fsync`` for many requests.
* The drainer reads batches in arrival order from the cursor and ``commit``s the cursor only after Kafka
  acknowledged the batch; fully drained segments are deleted.
* A write or ``fsync`` that fails (a full disk) is undone: the segment is cut back to its last whole record
  (or, when even that fails, the next append goes to a new segment), so what was kept before and after it
  stays readable. The requests of that group commit get ``SpoolFull`` (503: Dialpad retries).
* A record Kafka refuses for good (too large for the topic, say) is moved to ``undeliverable/`` as a JSON file
  (``set_aside``) instead of blocking every record behind it.
* At start the spool scans what is left and cuts a torn tail (a crash in the middle of a write), keeping the
  cut bytes aside in ``<segment>.torn-<offset>``, so it survives a crash or restart; records after the cursor
  are delivered again (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ingest.errors import SpoolCorrupt, SpoolFull, SpoolLocked
from ingest.records import OutboundRecord

log = logging.getLogger(__name__)

_FRAME = struct.Struct("<II")
_SUFFIX = ".spool"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OutboundRecord)


UNDELIVERABLE_DIR = "undeliverable"
"""Subdirectory of the spool holding the records Kafka refused for good (``Spool.set_aside``)."""


class UndeliverableRecord(msgspec.Struct):
    """A record Kafka will never accept as it is (e.g. larger than the topic allows), kept for an operator."""

    reason: str
    set_aside_ms: int
    topic: str
    key: str | None
    value: str
    headers: dict[str, str]
    timestamp_ms: int | None
    received_ms: int


class Cursor(msgspec.Struct, frozen=True):
    """The position of the first record Kafka has not acknowledged."""

    segment: int
    offset: int


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    """Bytes written and synced: readers never look past it."""


class _TailNotClean(Exception):
    """The last segment is longer than what was written and synced to it: a failed write not undone."""


def encode_frame(record: OutboundRecord) -> bytes:
    body = _encoder.encode(record)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _scan(data: bytes, max_records: int | None = None) -> tuple[list[OutboundRecord], int]:
    """Decode whole, intact frames from ``data`` (at most ``max_records``); return them and the bytes they span."""
    records: list[OutboundRecord] = []
    pos = 0
    while pos + _FRAME.size <= len(data) and (max_records is None or len(records) < max_records):
        length, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data):
            break
        body = data[pos + _FRAME.size:end]
        if zlib.crc32(body) != crc:
            break
        try:
            records.append(_decoder.decode(body))
        except msgspec.DecodeError:
            break
        pos = end
    return records, pos


class Spool:
    """A bounded, durable FIFO of ``OutboundRecord`` s. One writer (group commit), one reader (the drainer)."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.wakeup = asyncio.Event()
        """Set whenever records become readable; the drainer waits on it."""
        self._segments: list[_Segment] = []
        self._cursor = Cursor(0, 0)
        self._pending_records = 0
        self._oldest_received_ms: int | None = None
        self._queue: list[tuple[bytes, asyncio.Future[None], int]] = []
        self._queued_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._fd_seq = -1
        self._lock_fd: int | None = None
        self._closed = False
        self.write_error: str | None = None
        """Why the last group commit failed, until one succeeds again (``/readyz`` reports it)."""

    # ----- state -------------------------------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        """Records on disk that Kafka has not acknowledged yet."""
        return self._pending_records

    @property
    def pending_bytes(self) -> int:
        return sum(s.size for s in self._segments) - self._cursor.offset if self._segments else 0

    @property
    def oldest_received_ms(self) -> int | None:
        """Receive time of the oldest record waiting, or None when the spool is empty."""
        return self._oldest_received_ms

    def is_empty(self) -> bool:
        return self._pending_records == 0 and not self._queue

    def has_room(self, frame_bytes: int = 0) -> bool:
        return self.pending_bytes + self._queued_bytes + frame_bytes <= self.max_bytes

    # ----- open / close ------------------------------------------------------------------------------------

    def open(self, lock_timeout_s: float = 30.0) -> None:
        """Recover the spool from disk: read the cursor, drop drained segments, cut a torn tail.

        First takes the directory's lock (``spool.lock``, held until ``close`` or the process ends): one
        process at a time. A service restarted while the old one still finishes its requests waits for it,
        up to ``lock_timeout_s``; then it refuses to start (``SpoolLocked``) rather than share the files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock(lock_timeout_s)
        cursor_file = self.directory / "cursor"
        if cursor_file.exists():
            self._cursor = msgspec.json.decode(cursor_file.read_bytes(), type=Cursor)
        seqs = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        for seq in seqs:
            path = self._path(seq)
            if seq < self._cursor.segment:
                path.unlink()
                continue
            data = path.read_bytes()
            start = self._cursor.offset if seq == self._cursor.segment else 0
            records, used = _scan(data[start:])
            if start + used < len(data):
                try:
                    kept = str(self._keep_aside(path, start + used, data[start + used:]))
                except OSError as exc:  # a full disk must not keep the service from starting
                    kept = f"nowhere ({exc.strerror}: the bytes are dropped)"
                log.warning("spool %s: %d bytes after offset %d are not a whole record (a torn write); moved to "
                            "%s and cut from the segment", path.name, len(data) - start - used, start + used, kept)
                os.truncate(path, start + used)
            if records and self._oldest_received_ms is None:
                self._oldest_received_ms = records[0].received_ms
            self._pending_records += len(records)
            self._segments.append(_Segment(seq, path, start + used))
        if not self._segments or self._segments[0].seq != self._cursor.segment:
            # the cursor's segment is gone (fully drained and deleted): continue from the next one
            first = self._segments[0].seq if self._segments else self._cursor.segment + 1
            self._cursor = Cursor(first, 0)
            if not self._segments:
                self._segments.append(_Segment(first, self._path(first), 0))
        if self._pending_records:
            log.info("spool %s: %d records waiting for Kafka", self.directory, self._pending_records)
            self.wakeup.set()

    def _lock(self, timeout_s: float) -> None:
        path = self.directory / "spool.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        give_up, logged = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= give_up:
                    os.close(fd)
                    raise SpoolLocked(f"spool directory {self.directory} is in use by another process (pid "
                                      f"{holder}) after waiting {timeout_s:g} s: one ingest process per "
                                      "ONDUTY_SPOOL_DIR") from None
                if not logged:
                    log.warning("spool %s is locked by process %s (still stopping?); waiting up to %g s",
                                self.directory, holder, timeout_s)
                    logged = True
                time.sleep(0.1)
        os.pwrite(fd, f"{os.getpid():<31}\n".encode(), 0)  # fixed width: overwrites any earlier holder's
        self._lock_fd = fd

    def _keep_aside(self, path: Path, offset: int, data: bytes) -> Path:
        """Copy bytes about to be cut from a segment to ``<segment>.torn-<offset>`` (synced), for inspection:
        normally half a record, but whatever follows damage in the middle of a segment is kept too."""
        aside = path.with_name(f"{path.name}.torn-{offset}")
        _write_file_synced(aside, data)
        _fsync_dir(self.directory)
        return aside

    async def close(self) -> None:
        """Sync what was appended, then close the file (called at shutdown)."""
        self._closed = True
        if self._flusher is not None:
            try:
                await self._flusher
            except Exception:  # its requests were answered already; the files must still be closed
                log.exception("the spool's last group commit failed")
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def probe_writable(self) -> bool:
        """Runs in a worker thread (``/readyz`` after a failed write): can a small file be written and synced
        in the spool directory now? Clears ``write_error`` when it can."""
        probe = self.directory / "write-probe"
        try:
            _write_file_synced(probe, b"\0" * 4096)
        except OSError as exc:
            self.write_error = exc.strerror or str(exc)
            return False
        finally:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
        self.write_error = None
        return True

    # ----- writing -----------------------------------------------------------------------------------------

    async def append(self, record: OutboundRecord) -> None:
        """Keep ``record`` durably; return once it is fsync'd. Raise ``SpoolFull`` when there is no room."""
        if self._closed:
            raise SpoolFull("the service is shutting down")
        frame = encode_frame(record)
        if not self.has_room(len(frame)):
            raise SpoolFull(f"spool full ({self.pending_bytes} of {self.max_bytes} bytes waiting for Kafka)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((frame, future, record.received_ms))
        self._queued_bytes += len(frame)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queue())
        await future

    async def _flush_queue(self) -> None:
        batch: list[tuple[bytes, asyncio.Future[None], int]] = []
        try:
            await self._flush_batches(batch)
        except BaseException as exc:  # a bug or cancellation: no request may wait forever for its fsync
            for _, future, _ in batch + self._queue:
                if not future.done():
                    future.set_exception(SpoolFull(f"spool write failed: {exc!r}"))
            self._queue, self._queued_bytes = [], 0
            raise

    async def _flush_batches(self, batch: list[tuple[bytes, asyncio.Future[None], int]]) -> None:
        """Write and sync what is queued, one group commit at a time; ``batch`` holds the one being written."""
        loop = asyncio.get_running_loop()
        while self._queue:
            batch[:], self._queue = self._queue, []
            self._queued_bytes -= sum(len(frame) for frame, _, _ in batch)
            data = b"".join(frame for frame, _, _ in batch)
            tail = self._writable_tail()
            try:
                await loop.run_in_executor(None, self._write_synced, tail.seq, tail.size, data)
            except _TailNotClean:  # bytes past what was synced (not ours to read): continue in a new segment
                tail = self._writable_tail(roll=True)
                try:
                    await loop.run_in_executor(None, self._write_synced, tail.seq, tail.size, data)
                except (OSError, _TailNotClean) as exc:
                    self._write_failed(batch, exc)
                    continue
            except OSError as exc:
                self._write_failed(batch, exc)
                continue
            tail.size += len(data)
            self.write_error = None
            if self._pending_records == 0:
                self._oldest_received_ms = batch[0][2]
            self._pending_records += len(batch)
            for _, future, _ in batch:
                if not future.done():
                    future.set_result(None)
            self.wakeup.set()

    def _writable_tail(self, roll: bool = False) -> _Segment:
        """The segment to append to: a new one when the last is full, or when told to (``roll``)."""
        tail = self._segments[-1]
        if roll or tail.size >= self.segment_bytes:
            tail = _Segment(tail.seq + 1, self._path(tail.seq + 1), 0)
            self._segments.append(tail)
        return tail

    def _write_failed(self, batch: list[tuple[bytes, asyncio.Future[None], int]], exc: BaseException) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.write_error = reason
        log.error("spool write failed (503, the sender will retry): %s", reason)
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(SpoolFull(f"spool not writable: {reason}"))

    def _write_synced(self, seq: int, size: int, data: bytes) -> None:
        """Runs in a worker thread: append ``data`` to segment ``seq``, which holds ``size`` synced bytes, and
        fsync it. A write or sync that fails is undone (the file cut back to ``size``), so the next append
        starts on a record boundary; when even that fails, ``_TailNotClean`` sends the next append to a new
        segment. The bytes past ``size`` are not read while the service runs (readers stop at a segment's synced
        size); at the next start, whole records among them are recovered and delivered although their requests
        got 503 (Dialpad retried them): duplicates, never a loss."""
        if self._fd_seq != seq:
            if self._fd is not None:
                os.close(self._fd)
                self._fd, self._fd_seq = None, -1
            self._fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fd_seq = seq
            _fsync_dir(self.directory)
        fd = self._fd
        if os.fstat(fd).st_size != size:
            raise _TailNotClean(f"spool {self._path(seq).name} holds more than the {size} bytes written to it")
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            except OSError:
                pass  # the size check above catches it on the next append
            raise

    # ----- records Kafka will never accept ------------------------------------------------------------------

    async def set_aside(self, record: OutboundRecord, reason: str) -> Path:
        """Keep ``record``, which Kafka refused for good, in ``undeliverable/`` (one JSON file, synced) so that the
        drain goes on without it; return the file. The caller commits the cursor past it."""
        return await asyncio.get_running_loop().run_in_executor(None, self._write_undeliverable, record, reason)

    def _write_undeliverable(self, record: OutboundRecord, reason: str) -> Path:
        directory = self.directory / UNDELIVERABLE_DIR
        directory.mkdir(exist_ok=True)
        path = directory / f"{record.received_ms}-{time.time_ns()}.json"
        kept = UndeliverableRecord(
            reason=reason, set_aside_ms=int(time.time() * 1000), topic=record.topic,
            key=None if record.key is None else record.key.decode("utf-8", "replace"),
            value=record.value.decode("utf-8", "replace"), headers={k: v.decode("utf-8", "replace")
                                                                    for k, v in record.headers},
            timestamp_ms=record.timestamp_ms, received_ms=record.received_ms,
        )
        _replace_file_synced(path, msgspec.json.encode(kept) + b"\n")  # whole or not at all (a full disk)
        _fsync_dir(self.directory)  # the new undeliverable/ directory
        return path

    # ----- reading -----------------------------------------------------------------------------------------

    def read_batch(self, max_records: int, max_bytes: int = 1024 * 1024) -> tuple[list[OutboundRecord], Cursor]:
        """Up to ``max_records`` records from the cursor, in arrival order, and the cursor after them."""
        cursor = self._cursor
        for segment in self._segments:
            if segment.seq < cursor.segment:
                continue
            if cursor.offset >= segment.size:
                if segment is self._segments[-1]:
                    break
                cursor = Cursor(segment.seq + 1, 0)
                continue
            with open(segment.path, "rb") as file:
                file.seek(cursor.offset)
                data = file.read(min(segment.size - cursor.offset, max_bytes))
                if len(data) >= _FRAME.size:  # a single record larger than max_bytes: read all of it
                    whole = _FRAME.size + _FRAME.unpack_from(data)[0]
                    if whole > len(data) and cursor.offset + whole <= segment.size:
                        data += file.read(whole - len(data))
            records, used = _scan(data, max_records)
            if not records:
                raise SpoolCorrupt(f"spool {segment.path.name}: no readable record at offset {cursor.offset}")
            return records, Cursor(segment.seq, cursor.offset + used)
        return [], cursor

    async def commit(self, cursor: Cursor, records: int) -> None:
        """Kafka acknowledged ``records`` records up to ``cursor``: persist it and drop drained segments."""
        await asyncio.get_running_loop().run_in_executor(None, self._write_cursor, cursor)
        self._cursor = cursor
        self._pending_records -= records
        while len(self._segments) > 1 and self._segments[0].seq < cursor.segment:
            self._segments.pop(0).path.unlink(missing_ok=True)
        if self._pending_records == 0:
            self._oldest_received_ms = None
        else:
            try:
                head, _ = self.read_batch(1)
            except SpoolCorrupt:  # reported (and the drainer stopped) by the drainer's next read
                head = []
            self._oldest_received_ms = head[0].received_ms if head else None

    def _write_cursor(self, cursor: Cursor) -> None:
        _replace_file_synced(self.directory / "cursor", msgspec.json.encode(cursor))

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{_SUFFIX}"


def _write_file_synced(path: Path, data: bytes) -> None:
    """Write ``path`` (replacing it) and fsync it; the caller syncs the directory when the name is new."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _replace_file_synced(path: Path, data: bytes) -> None:
    """Put ``data`` in ``path`` whole or not at all: written and synced as ``<path>.tmp`` (removed when that fails),
    then renamed over ``path``, the directory synced."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        _write_file_synced(tmp, data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
