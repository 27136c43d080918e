"""The durable spool and publish-or-spool delivery: nothing accepted is lost, order is kept, 503 only when full."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import jwt
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest import IngestSettings, create_app, keys
from ingest.errors import SpoolFull, SpoolLocked
from ingest.records import DEDUP_HEADER, RECEIVED_HEADER, OutboundRecord
from ingest.spool import UNDELIVERABLE_DIR, Spool, UndeliverableRecord
from ingest.testing import MemoryPublisher
from tests.kafka_helpers import wait_until
from tests.samples import payload

SECRET = "spool-test-secret-0123456789abcdef0123"
URL = "/webhooks/dialpad/agent-status"


def record(i: int) -> OutboundRecord:
    return OutboundRecord("t", str(i % 3).encode(), b"v%d" % i, [("h", b"x")], 1_700_000_000_000 + i, 1000 + i)


def open_spool(directory: Path, **kwargs) -> Spool:
    lock_timeout_s = kwargs.pop("lock_timeout_s", 30.0)
    spool = Spool(directory, max_bytes=kwargs.pop("max_bytes", 1 << 20), **kwargs)
    spool.open(lock_timeout_s=lock_timeout_s)
    return spool


async def drain_all(spool: Spool, batch: int = 7) -> list[OutboundRecord]:
    got = []
    while True:
        records, cursor = spool.read_batch(batch)
        if not records:
            return got
        got += records
        await spool.commit(cursor, len(records))


async def test_records_come_back_in_arrival_order_across_segments(tmp_path):
    spool = open_spool(tmp_path, segment_bytes=200)  # a handful of records per segment
    await asyncio.gather(*(spool.append(record(i)) for i in range(10)))  # concurrent: one group commit
    for i in range(10, 50):
        await spool.append(record(i))
    assert spool.pending_records == 50 and spool.oldest_received_ms == 1000
    assert len(list(tmp_path.glob("*.spool"))) > 3
    assert await drain_all(spool) == [record(i) for i in range(50)]
    assert spool.pending_records == 0 and spool.oldest_received_ms is None and spool.pending_bytes == 0
    assert len(list(tmp_path.glob("*.spool"))) == 1  # drained segments deleted
    await spool.close()


async def test_spool_survives_restart_and_resumes_after_the_committed_cursor(tmp_path):
    spool = open_spool(tmp_path, segment_bytes=300)
    for i in range(20):
        await spool.append(record(i))
    records, cursor = spool.read_batch(8)
    await spool.commit(cursor, len(records))
    await spool.close()

    reopened = open_spool(tmp_path, segment_bytes=300)
    assert reopened.pending_records == 12 and reopened.oldest_received_ms == 1008
    await reopened.append(record(20))
    assert await drain_all(reopened) == [record(i) for i in range(8, 21)]
    await reopened.close()


async def test_a_torn_write_at_the_tail_is_truncated_at_start(tmp_path):
    spool = open_spool(tmp_path)
    for i in range(3):
        await spool.append(record(i))
    await spool.close()
    [segment] = tmp_path.glob("*.spool")
    with open(segment, "ab") as file:
        file.write(b"\x40\x00\x00\x00garbage")  # a crash in the middle of the next frame
    reopened = open_spool(tmp_path)
    assert reopened.pending_records == 3
    await reopened.append(record(3))
    assert await drain_all(reopened) == [record(i) for i in range(4)]
    [kept] = tmp_path.glob("*.spool.torn-*")  # the cut bytes are kept aside, not deleted
    assert kept.read_bytes() == b"\x40\x00\x00\x00garbage"


def fail_once_halfway(monkeypatch, *, undo_fails: bool = False) -> None:
    """The spool's next write stores half its bytes, then fails (a full disk); with ``undo_fails`` the
    truncation that would undo it fails too."""
    import ingest.spool as spool_module

    real_write, real_ftruncate = spool_module.os.write, spool_module.os.ftruncate
    state = {"failed": False}

    def write(fd, data):
        if state["failed"]:
            return real_write(fd, data)
        state["failed"] = True
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(28, "No space left on device")

    def ftruncate(fd, size):
        if undo_fails:
            raise OSError(5, "Input/output error")
        return real_ftruncate(fd, size)

    monkeypatch.setattr(spool_module.os, "write", write)
    monkeypatch.setattr(spool_module.os, "ftruncate", ftruncate)


@pytest.mark.parametrize("undo_fails", [False, True], ids=["write-undone", "undo-failed-too"])
async def test_a_failed_write_loses_nothing_written_before_or_after_it(tmp_path, monkeypatch, undo_fails):
    spool = open_spool(tmp_path)
    for i in range(3):
        await spool.append(record(i))
    fail_once_halfway(monkeypatch, undo_fails=undo_fails)
    with pytest.raises(SpoolFull, match="spool not writable: No space left on device"):
        await spool.append(record(99))  # refused (503): the sender retries it
    for i in range(3, 8):
        await spool.append(record(i))
    assert spool.pending_records == 8
    assert await drain_all(spool, batch=2) == [record(i) for i in range(8)]
    await spool.close()

    for i in range(8, 10):  # and across a restart: nothing accepted is cut as a torn tail
        reopened = open_spool(tmp_path)
        await reopened.append(record(i))
        await reopened.close()
    assert await drain_all(open_spool(tmp_path)) == [record(8), record(9)]



async def test_one_process_at_a_time_holds_the_spool_directory(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from ingest.spool import Spool; "
        "s = Spool(Path(sys.argv[1]), max_bytes=1 << 20); s.open(); print('locked', flush=True); time.sleep(60)"),
        str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SpoolLocked, match=f"in use by another process \\(pid {holder.pid}\\)"):
            Spool(tmp_path, max_bytes=1 << 20).open(lock_timeout_s=0.3)
    finally:
        holder.kill()
        holder.wait()
    spool = open_spool(tmp_path)  # the holder is gone: its lock with it
    await spool.append(record(0))
    await spool.close()
    reopened = open_spool(tmp_path)  # closed: released
    assert reopened.pending_records == 1
    await reopened.close()


async def test_a_spool_that_cannot_keep_a_torn_tail_aside_still_opens(tmp_path, monkeypatch):
    spool = open_spool(tmp_path)
    await spool.append(record(0))
    await spool.close()
    [segment] = tmp_path.glob("*.spool")
    with open(segment, "ab") as file:
        file.write(b"\x40\x00\x00\x00garbage")

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "_keep_aside", no_room)
    reopened = open_spool(tmp_path)
    assert reopened.pending_records == 1
    await reopened.close()


async def test_close_releases_the_files_after_a_failed_group_commit(tmp_path, monkeypatch):
    spool = open_spool(tmp_path)
    monkeypatch.setattr(spool, "_writable_tail", lambda roll=False: (_ for _ in ()).throw(RuntimeError("bug")))
    with pytest.raises(SpoolFull, match="spool write failed"):
        await spool.append(record(0))
    await spool.close()  # logs the failure, does not raise
    assert spool._lock_fd is None
    open_spool(tmp_path, lock_timeout_s=0)  # the lock was released

async def test_append_beyond_max_bytes_raises_spool_full(tmp_path):
    spool = open_spool(tmp_path, max_bytes=200)
    with pytest.raises(SpoolFull):
        for i in range(10):
            await spool.append(record(i))
    assert 0 < spool.pending_records < 10


# ----- through the app -------------------------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path) -> IngestSettings:
    return IngestSettings(webhook_secrets=(SECRET,), raw_topic="raw", spool_dir=tmp_path / "spool",
                          publish_deadline_ms=50)


async def serve(settings: IngestSettings, kafka: MemoryPublisher) -> TestClient:
    client = TestClient(TestServer(create_app(settings, publisher=kafka)))
    await client.start_server()
    return client


def token(i: int) -> str:
    return jwt.encode(payload(target={"id": 100 + i % 5}, date=1_700_000_000_000 + i), SECRET, algorithm="HS256")


@pytest.mark.parametrize("failure", ["down", "stalled"])
async def test_kafka_down_or_slow_events_are_accepted_and_delivered_in_order_once_back(settings, failure):
    kafka = MemoryPublisher()
    client = await serve(settings, kafka)
    try:
        assert (await client.post(URL, data=token(0))).status == 202
        kafka.mode = failure
        started = time.monotonic()
        for i in range(1, 21):
            response = await client.post(URL, data=token(i))
            assert response.status == 202 and (await response.json())["kept_in"] == "spool"
        assert time.monotonic() - started < 5  # only the first one waited for the deadline
        ready = await (await client.get("/readyz")).json()
        assert ready["mode"] == "spool" and ready["spool_records"] == 20
        metrics = await (await client.get("/metrics")).text()
        assert "onduty_ingest_spool_depth 20" in metrics and "onduty_ingest_kafka_up 0" in metrics

        kafka.mode = "up"
        await wait_until(lambda: len(kafka.sent) == 21, deadline_s=10)
        assert [r.timestamp_ms - 1_700_000_000_000 for r in kafka.sent] == list(range(21))
        await wait_until(lambda: client.app[keys.DELIVERY].kafka_up, deadline_s=10)
        assert (await (await client.post(URL, data=token(21))).json())["kept_in"] == "kafka"
    finally:
        await client.close()


async def test_an_event_kafka_refuses_for_good_is_set_aside_and_the_others_still_go(settings):
    refused_date = 1_700_000_000_000 + 5
    kafka = MemoryPublisher(too_large=lambda record: record.timestamp_ms == refused_date)
    client = await serve(settings, kafka)
    try:
        for i in range(10):
            assert (await client.post(URL, data=token(i))).status == 202
        await wait_until(lambda: len(kafka.sent) == 9 and client.app[keys.DELIVERY].kafka_up, deadline_s=10)
        assert [r.timestamp_ms - 1_700_000_000_000 for r in kafka.sent] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        [kept] = (settings.spool_dir / UNDELIVERABLE_DIR).glob("*.json")
        undeliverable = msgspec.json.decode(kept.read_bytes(), type=UndeliverableRecord)
        assert "MessageSizeTooLargeError" in undeliverable.reason and undeliverable.topic == "raw"
        assert msgspec.json.decode(undeliverable.value)["date"] == refused_date
        assert undeliverable.headers.keys() == {DEDUP_HEADER, RECEIVED_HEADER}
        metrics = await (await client.get("/metrics")).text()
        assert "onduty_ingest_undeliverable_total 1" in metrics and "onduty_ingest_spool_depth 0" in metrics
        assert kafka.restarts >= 1  # the refused batch left a gap in the idempotent producer's sequence
    finally:
        await client.close()


async def test_an_event_kafka_refuses_for_good_in_the_middle_of_the_spool_does_not_stop_the_drain(settings):
    refused_date = 1_700_000_000_000 + 5
    kafka = MemoryPublisher("down", too_large=lambda record: record.timestamp_ms == refused_date)
    client = await serve(settings, kafka)
    try:
        for i in range(10):  # all spooled: the refused one is in the middle of the drainer's first batch
            assert (await client.post(URL, data=token(i))).status == 202
        kafka.mode = "up"
        await wait_until(lambda: len(kafka.sent) == 9 and client.app[keys.DELIVERY].kafka_up, deadline_s=10)
        assert [r.timestamp_ms - 1_700_000_000_000 for r in kafka.sent] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        assert len(list((settings.spool_dir / UNDELIVERABLE_DIR).glob("*.json"))) == 1
    finally:
        await client.close()


async def test_only_a_full_spool_gives_503(settings):
    kafka = MemoryPublisher("down")
    client = await serve(replace(settings, spool_max_bytes=2000), kafka)
    try:
        statuses = [(await client.post(URL, data=token(i))).status for i in range(10)]
        assert statuses[0] == 202 and statuses[-1] == 503 and set(statuses) == {202, 503}
        ready = await client.get("/readyz")
        assert ready.status == 503
        metrics = await (await client.get("/metrics")).text()
        assert "onduty_ingest_producer_errors_total 0\n" not in metrics  # the failed producer starts count
    finally:
        await client.close()



async def test_an_unwritable_spool_makes_the_service_not_ready_while_it_lasts(settings, monkeypatch):
    import ingest.spool as spool_module

    real_write, real_fsync = spool_module.os.write, spool_module.os.fsync
    disk = {"full": False}

    def write(fd, data):
        if disk["full"]:
            real_write(fd, bytes(data[:len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    def fsync(fd):
        if disk["full"]:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "write", write)
    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    client = await serve(settings, MemoryPublisher("down"))
    try:
        assert (await client.post(URL, data=token(0))).status == 202
        disk["full"] = True
        refused = await client.post(URL, data=token(1))
        assert refused.status == 503 and "No space left on device" in (await refused.json())["detail"]
        ready = await client.get("/readyz")
        assert ready.status == 503 and "not writable (No space left on device)" in (await ready.json())["status"]
        disk["full"] = False  # room again: ready without waiting for traffic to prove it
        assert (await client.get("/readyz")).status == 200
        assert (await client.post(URL, data=token(2))).status == 202
        assert client.app[keys.SPOOL].pending_records == 2
    finally:
        await client.close()


async def test_readyz_is_503_when_the_drainer_stopped(settings):
    client = await serve(settings, MemoryPublisher("down"))
    try:
        drainer = client.app[keys.DRAINER]
        drainer.cancel()  # as a damaged spool stops it
        await asyncio.gather(drainer, return_exceptions=True)
        ready = await client.get("/readyz")
        assert ready.status == 503 and "drainer stopped" in (await ready.json())["status"]
    finally:
        await client.close()

async def test_spooled_events_are_drained_after_a_restart_of_the_service(settings):
    down = MemoryPublisher("down")
    client = await serve(settings, down)
    for i in range(5):
        assert (await client.post(URL, data=token(i))).status == 202
    await client.close()  # graceful shutdown with 5 events in the spool

    kafka = MemoryPublisher()
    client = await serve(settings, kafka)
    try:
        await wait_until(lambda: len(kafka.sent) == 5, deadline_s=10)
        assert [r.timestamp_ms - 1_700_000_000_000 for r in kafka.sent] == list(range(5))
    finally:
        await client.close()


async def test_concurrent_appends_share_one_fsync(tmp_path):
    spool = open_spool(tmp_path)
    writes = []
    original = spool._write_synced
    spool._write_synced = lambda seq, size, data: (writes.append(len(data)), original(seq, size, data))[1]
    await spool.append(record(0))
    await asyncio.gather(*(spool.append(record(i)) for i in range(1, 101)))
    assert len(writes) <= 3  # group commit: not one fsync per request
    assert spool.pending_records == 101


async def test_a_set_aside_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    spool = open_spool(tmp_path)
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        await spool.set_aside(record(1), "MessageSizeTooLargeError")
    assert list((tmp_path / UNDELIVERABLE_DIR).iterdir()) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    kept = await spool.set_aside(record(1), "MessageSizeTooLargeError")
    assert [p.name for p in (tmp_path / UNDELIVERABLE_DIR).iterdir()] == [kept.name]
    assert msgspec.json.decode(kept.read_bytes(), type=UndeliverableRecord).value == "v1"
    await spool.close()
