"""`onduty topics` against the real broker: creates, is idempotent, reports and fixes drift, never hides a wrong
partition count."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from onduty import cli
from onduty.topics_admin import _describe, ensure_topics
from schemas.topics import pipeline_topics
from tests.kafka_helpers import create_topics, wait_until

pytestmark = pytest.mark.integration


def unique_specs(unique_name, partitions: int = 4):
    """The documented topics under unique names, so the test never touches a shared broker's real topics."""
    return [msgspec.structs.replace(spec, name=unique_name(spec.name)) for spec in pipeline_topics(partitions=partitions)]


async def describe(bootstrap: str, names: list[str]):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await _describe(admin, names)
    finally:
        await admin.close()


async def alter(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
        # the broker applies the change from the metadata log a moment after acknowledging it
        await wait_until(lambda: configs_applied(bootstrap, name, configs), deadline_s=15)
    finally:
        await admin.close()


async def configs_applied(bootstrap: str, name: str, configs: dict[str, str]) -> bool:
    actual = (await describe(bootstrap, [name]))[name].configs
    return all(actual.get(key) == value for key, value in configs.items())


async def test_check_reports_missing_topics_and_creates_nothing(kafka_bootstrap, unique_name):
    specs = unique_specs(unique_name)
    reports = await ensure_topics(kafka_bootstrap, specs, check_only=True)
    assert [(r.name, r.status) for r in reports] == [(s.name, "missing") for s in specs]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert not {s.name for s in specs} & set(await admin.list_topics())
    finally:
        await admin.close()


async def test_creates_every_topic_as_documented_and_is_idempotent(kafka_bootstrap, unique_name):
    specs = unique_specs(unique_name)
    first = await ensure_topics(kafka_bootstrap, specs)
    assert [r.status for r in first] == ["created"] * len(specs)

    actual = await describe(kafka_bootstrap, [s.name for s in specs])
    for spec in specs:
        topic = actual[spec.name]
        assert topic.partitions == spec.partitions
        assert topic.configs["cleanup.policy"] == spec.cleanup_policy
        if spec.retention_ms is not None:
            assert topic.configs["retention.ms"] == str(spec.retention_ms)

    again = await ensure_topics(kafka_bootstrap, specs)
    assert [r.status for r in again] == ["ok"] * len(specs)
    checked = await ensure_topics(kafka_bootstrap, specs, check_only=True)
    assert not any(r.problem for r in checked)


async def test_drifted_configs_are_reported_then_fixed_keeping_other_overrides(kafka_bootstrap, unique_name):
    specs = unique_specs(unique_name)
    await ensure_topics(kafka_bootstrap, specs)
    raw = next(s for s in specs if s.cleanup_policy == "delete" and s.retention_ms)
    compacted = next(s for s in specs if s.cleanup_policy == "compact")
    # an operator's own override (max.message.bytes) must survive the fix
    await alter(kafka_bootstrap, raw.name, {"cleanup.policy": "delete", "retention.ms": "60000",
                                            "max.message.bytes": "2000000"})
    await alter(kafka_bootstrap, compacted.name, {"cleanup.policy": "delete"})

    checked = {r.name: r for r in await ensure_topics(kafka_bootstrap, specs, check_only=True)}
    assert checked[raw.name].status == "differs"
    assert checked[raw.name].details == [f"retention.ms: 60000, documented {raw.retention_ms}"]
    assert checked[compacted.name].details == ["cleanup.policy: delete, documented compact"]
    assert sum(r.problem for r in checked.values()) == 2

    fixed = {r.name: r for r in await ensure_topics(kafka_bootstrap, specs)}
    assert fixed[raw.name].status == "fixed"
    assert fixed[compacted.name].status == "fixed"
    actual = await describe(kafka_bootstrap, [raw.name, compacted.name])
    assert actual[raw.name].configs["retention.ms"] == str(raw.retention_ms)
    assert actual[raw.name].configs["max.message.bytes"] == "2000000"
    assert actual[compacted.name].configs["cleanup.policy"] == "compact"
    assert not any(r.problem for r in await ensure_topics(kafka_bootstrap, specs, check_only=True))


async def topic_listed(bootstrap: str, name: str):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return name in await admin.list_topics()
    finally:
        await admin.close()


async def test_wrong_partition_count_is_reported_by_the_command_with_a_failing_exit(
    kafka_bootstrap, unique_name, monkeypatch, capsys
):
    specs = unique_specs(unique_name, partitions=4)
    await create_topics(kafka_bootstrap, [specs[0].name], partitions=2, configs=specs[0].configs())
    await wait_until(lambda: topic_listed(kafka_bootstrap, specs[0].name), deadline_s=15)
    monkeypatch.setattr("schemas.topics.pipeline_topics", lambda raw_topic, partitions, **names: specs)

    def command(*args: str) -> int:
        return cli.main(["topics", "--bootstrap", kafka_bootstrap, *args])

    # the command starts its own event loop: run it in a worker thread
    assert await asyncio.to_thread(command, "--check") == 1
    out = capsys.readouterr()
    assert f"differs  {specs[0].name} (partitions: 2, documented 4)" in out.out
    assert "missing" in out.out

    assert await asyncio.to_thread(command) == 1  # creates the others, cannot fix the partitions
    out = capsys.readouterr()
    assert f"created  {specs[1].name}" in out.out
    assert "partition count cannot be changed in place" in out.err
    assert (await ensure_topics(kafka_bootstrap, specs[1:], check_only=True))[0].status == "ok"
