"""The local broker's helpers, and `onduty kafka` ending when its broker exits (the broker itself is exercised by
every integration test)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import uuid

from onduty import kafka_broker


def test_a_cluster_id_is_16_random_bytes_in_base64url():
    cluster_id = kafka_broker.new_cluster_id()
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xF8 encodes to "-" first: `kafka-storage format -t -…` would take the id for an option and fail
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(drawn))
    cluster_id = kafka_broker.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(b"\x01" + bytes(15)).decode().rstrip("=")


def test_a_broker_that_exits_on_its_own_ends_the_wait_with_its_exit_code_and_log(tmp_path):
    from onduty.commands.kafka import wait_for_termination

    broker = kafka_broker.LocalKafkaBroker(kafka_broker.BrokerConfig(data_dir=tmp_path, port=1))
    assert broker.exit_report() is None  # not started
    (tmp_path / "broker.stdout").write_text("java.lang.OutOfMemoryError: Java heap space\n")
    broker.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"])
    try:
        report = wait_for_termination(broker, poll_s=0.05)
    finally:
        broker.stop()
    assert report is not None
    assert report.startswith("Kafka exited with code 3:")
    assert "OutOfMemoryError" in report


def test_the_wait_ends_on_sigterm_and_gives_the_signal_handlers_back(tmp_path):
    from onduty.commands.kafka import wait_for_termination

    broker = kafka_broker.LocalKafkaBroker(kafka_broker.BrokerConfig(data_dir=tmp_path, port=1))
    broker.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert wait_for_termination(broker, poll_s=0.05) is None
    finally:
        timer.cancel()
        broker.stop()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_killed_broker_is_reported_by_its_signal(tmp_path):
    broker = kafka_broker.LocalKafkaBroker(kafka_broker.BrokerConfig(data_dir=tmp_path, port=1))
    broker.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    broker.process.kill()
    broker.process.wait()
    assert broker.exit_report().startswith("Kafka was killed by SIGKILL:")


def test_the_broker_runs_with_kafkas_own_default_jvm_settings(tmp_path, monkeypatch):
    """A 1 GB heap from the start and G1 aiming at 20 ms pauses, as ``kafka-server-start.sh`` gives a broker: with
    128 MB to start, its young generation was collected every 1-2 s under load, each pause holding every
    acknowledgement in flight."""
    monkeypatch.setattr(kafka_broker.shutil, "which", lambda name: f"/usr/bin/{name}")
    broker = kafka_broker.LocalKafkaBroker(kafka_broker.BrokerConfig(data_dir=tmp_path, port=1))
    broker.libs = tmp_path / "libs"
    command = broker._java("kafka.Kafka", "server.properties")
    assert command[:3] == ["/usr/bin/java", "-Xmx1g", "-Xms1g"]
    assert {"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"} <= set(command)
    assert command[-2:] == ["kafka.Kafka", "server.properties"]
    storage_format = broker._java("kafka.tools.StorageTool", "format")  # a short run: a tool's heap, none reserved
    assert storage_format[:2] == ["/usr/bin/java", "-Xmx256M"] and not any(o.startswith("-Xms") for o in storage_format)
