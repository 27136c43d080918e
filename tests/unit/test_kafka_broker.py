"""The local broker's pure helpers (the broker itself is exercised by every integration test)."""

from __future__ import annotations

import base64
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
