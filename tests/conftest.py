"""Test harness: one real Kafka broker per test session, shared by every integration test.

Where the broker comes from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (an existing broker);
2. testcontainers' Kafka when a Docker engine answers;
3. otherwise the project's own local broker (``onduty.kafka_broker``), in a fresh data directory.

Every test gets unique topic and group names through ``unique_name``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no SDK, no socket, no daemon: all mean "no Docker here"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for the whole session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from onduty.kafka_broker import BrokerConfig, LocalKafkaBroker, free_port

    broker = LocalKafkaBroker(BrokerConfig(tmp_path_factory.mktemp("kafka"), port=free_port()))
    broker.start()
    try:
        yield broker.config.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest):
    """Make topic and group names unique to this test run: ``unique_name("raw")``."""
    token = uuid.uuid4().hex[:8]
    test = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]

    def make(label: str) -> str:
        return f"test.{test}.{label}.{token}"

    return make
