"""End-to-end tests: the local stack's real processes (`onduty topics`, `onduty ingest`, `onduty processor`) on a
Kafka broker of their own.

They never use a shared broker (``KAFKA_BOOTSTRAP_SERVERS``): the derived topics have fixed names that the stack
writes, so each session starts the project's broker in a fresh directory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs the local stack's processes on a broker of its own")


@pytest.fixture(scope="session")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from onduty.kafka_broker import BrokerConfig, LocalKafkaBroker, free_port

    broker = LocalKafkaBroker(BrokerConfig(tmp_path_factory.mktemp("e2e-kafka"), port=free_port()))
    broker.start()
    try:
        yield broker.config.bootstrap
    finally:
        broker.stop()
