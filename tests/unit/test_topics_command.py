"""``onduty topics`` manages the topics under the names the services are configured with."""

from __future__ import annotations

import pytest

from onduty import cli


def test_the_raw_and_rejected_topics_follow_the_ingest_settings(monkeypatch, capsys):
    seen = []

    async def ensure_topics(bootstrap, specs, **options):
        seen.extend(spec.name for spec in specs)
        return []

    monkeypatch.setattr("onduty.topics_admin.ensure_topics", ensure_topics)
    monkeypatch.setenv("ONDUTY_RAW_TOPIC", "acme.status")
    monkeypatch.setenv("ONDUTY_REJECTED_TOPIC", "acme.rejected")
    assert cli.main(["topics", "--bootstrap", "127.0.0.1:1"]) == 0
    assert seen[:2] == ["acme.status", "acme.rejected"]
    assert "dialpad.agent-status.rejected.v1" not in seen


@pytest.mark.parametrize("argv, environ, words", [
    (["--partitions", "0"], {}, "--partitions / ONDUTY_PARTITIONS must be at least 1, not 0"),
    ([], {"ONDUTY_PARTITIONS": "0"}, "--partitions / ONDUTY_PARTITIONS must be at least 1, not 0"),
    (["--replication-factor", "-1"], {}, "ONDUTY_REPLICATION_FACTOR must be positive (0: automatic), not -1"),
])
def test_a_partition_count_or_replication_factor_kafka_cannot_use_is_refused_not_replaced(monkeypatch, capsys, argv,
                                                                                         environ, words):
    """0 partitions used to mean the default (8) without a word."""
    async def ensure_topics(bootstrap, specs, **options):
        raise AssertionError("Kafka must not be asked")

    monkeypatch.setattr("onduty.topics_admin.ensure_topics", ensure_topics)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["topics", "--bootstrap", "127.0.0.1:1", *argv]) == 2
    assert words in capsys.readouterr().err


def test_replication_factor_0_means_automatic(monkeypatch):
    seen = {}

    async def ensure_topics(bootstrap, specs, **options):
        seen.update(options)
        return []

    monkeypatch.setattr("onduty.topics_admin.ensure_topics", ensure_topics)
    assert cli.main(["topics", "--bootstrap", "127.0.0.1:1", "--replication-factor", "0"]) == 0
    assert seen["replication_factor"] is None
