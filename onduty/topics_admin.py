"""Create or check the pipeline's topics against their documented configuration (``schemas.topics``).

The comparison is a pure function (``topic_differences``); ``ensure_topics`` is the thin aiokafka edge:
it creates missing topics, brings drifted topic configs back to the documented values (keeping any other
per-topic override an operator set) and reports a partition count it cannot fix: adding partitions to a
keyed topic would move keys between partitions and break per-agent ordering and co-partitioning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.topics import TopicSpec

log = logging.getLogger(__name__)

_DYNAMIC_TOPIC_CONFIG = 1
"""``config_source`` of a per-topic override in DescribeConfigs responses."""
_TOPIC_ALREADY_EXISTS = 36


class TopicsError(RuntimeError):
    """Topics could not be created or described; the message says which and why."""


@dataclass(frozen=True)
class ActualTopic:
    """What the cluster has for one topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    """Effective topic configs (overrides and defaults)."""
    overrides: Mapping[str, str] = field(default_factory=dict)
    """Only the per-topic overrides."""


def topic_differences(spec: TopicSpec, actual: ActualTopic) -> list[str]:
    """Human-readable differences between the documented topic and the cluster's, empty when it matches."""
    differences = []
    if actual.partitions != spec.partitions:
        differences.append(f"partitions: {actual.partitions}, documented {spec.partitions}")
    for key, wanted in spec.configs().items():
        have = actual.configs.get(key)
        if have != wanted:
            differences.append(f"{key}: {have}, documented {wanted}")
    return differences


def config_differences(spec: TopicSpec, actual: ActualTopic) -> dict[str, str]:
    """The documented configs that differ on the cluster (the fixable part of ``topic_differences``)."""
    return {key: wanted for key, wanted in spec.configs().items() if actual.configs.get(key) != wanted}


@dataclass
class TopicReport:
    """The outcome for one topic."""

    name: str
    status: str
    """``created``, ``ok``, ``fixed``, ``differs`` or ``missing``."""
    details: list[str] = field(default_factory=list)

    @property
    def problem(self) -> bool:
        return self.status in ("differs", "missing")

    def line(self) -> str:
        suffix = f" ({'; '.join(self.details)})" if self.details else ""
        return f"{self.status:8} {self.name}{suffix}"


async def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    check_only: bool = False,
    replication_factor: int | None = None,
    request_timeout_ms: int = 30_000,
) -> list[TopicReport]:
    """Create missing topics and fix drifted configs (or, with ``check_only``, only report them).

    ``replication_factor`` None means ``min(3, number of brokers)``.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
    except Exception as exc:
        raise TopicsError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(await admin.list_topics())
        if replication_factor is None:
            brokers = (await admin.describe_cluster())["brokers"]
            replication_factor = min(3, len(brokers))
        reports: list[TopicReport] = []
        missing = [spec for spec in specs if spec.name not in existing]
        present = [spec for spec in specs if spec.name in existing]
        if missing and check_only:
            reports += [TopicReport(spec.name, "missing") for spec in missing]
        elif missing:
            reports += await _create(admin, missing, replication_factor)
            await _until_visible(admin, [spec.name for spec in missing])
        if present:
            actual = await _describe(admin, [spec.name for spec in present])
            for spec in present:
                reports.append(await _reconcile(admin, spec, actual[spec.name], check_only))
    finally:
        await admin.close()
    order = {spec.name: i for i, spec in enumerate(specs)}
    return sorted(reports, key=lambda report: order[report.name])


async def _create(admin, specs: Sequence[TopicSpec], replication_factor: int) -> list[TopicReport]:
    from aiokafka.admin import NewTopic

    response = await admin.create_topics(
        [NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=spec.configs()) for spec in specs]
    )
    reports = []
    failures = []
    for error in response.to_object()["topic_errors"]:
        name, code = error["topic"], error["error_code"]
        if code == 0:
            log.info("created topic %s", name)
            reports.append(TopicReport(name, "created"))
        elif code == _TOPIC_ALREADY_EXISTS:  # another `onduty topics` won the race: checked next run
            reports.append(TopicReport(name, "ok", ["created concurrently"]))
        else:
            failures.append(f"{name}: error {code} {error['error_message']}")
    if failures:
        raise TopicsError("could not create topics: " + "; ".join(failures))
    return reports


async def _describe(admin, names: Sequence[str]) -> dict[str, ActualTopic]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    metadata = {topic["topic"]: topic for topic in await admin.describe_topics(list(names))}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    result = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            if resource["error_code"]:
                raise TopicsError(f"cannot describe configs of {name}: {resource['error_message']}")
            entries = resource["config_entries"]
            partitions = metadata[name]["partitions"]
            result[name] = ActualTopic(
                name=name,
                partitions=len(partitions),
                replication_factor=min((len(p["replicas"]) for p in partitions), default=0),
                configs={e["config_names"]: e["config_value"] for e in entries},
                overrides={e["config_names"]: e["config_value"] for e in entries
                           if e["config_source"] == _DYNAMIC_TOPIC_CONFIG},
            )
    return result


async def _reconcile(admin, spec: TopicSpec, actual: ActualTopic, check_only: bool) -> TopicReport:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    differences = topic_differences(spec, actual)
    if not differences:
        return TopicReport(spec.name, "ok")
    fixable = config_differences(spec, actual)
    if check_only or not fixable:
        return TopicReport(spec.name, "differs", differences)
    # AlterConfigs replaces every override of the topic: send the existing ones along with the fixes
    wanted = {**actual.overrides, **fixable}
    responses = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, wanted)])
    for response in responses:
        for resource in response.to_object().get("resources", []):
            if resource["error_code"]:
                raise TopicsError(f"cannot change configs of {spec.name}: {resource['error_message']}")
    log.info("changed configs of topic %s: %s", spec.name, fixable)
    await _until_configs(admin, spec.name, fixable)
    unfixed = [d for d in differences if d.startswith("partitions")]
    if unfixed:
        return TopicReport(spec.name, "differs", [*unfixed, *(f"set {k}={v}" for k, v in fixable.items())])
    return TopicReport(spec.name, "fixed", [f"set {k}={v}" for k, v in fixable.items()])


# The broker applies creations and config changes from the KRaft metadata log a moment after acknowledging
# them; wait until they show, so that what runs next (a worker, a check) sees the documented topics.
_PROPAGATION_DEADLINE_S = 15.0


async def _until_visible(admin, names: Sequence[str]) -> None:
    deadline = time.monotonic() + _PROPAGATION_DEADLINE_S
    while not set(names) <= set(await admin.list_topics()):
        if time.monotonic() > deadline:
            raise TopicsError(f"created topics did not become visible within {_PROPAGATION_DEADLINE_S:.0f}s")
        await asyncio.sleep(0.1)


async def _until_configs(admin, name: str, wanted: Mapping[str, str]) -> None:
    deadline = time.monotonic() + _PROPAGATION_DEADLINE_S
    while True:
        configs = (await _describe(admin, [name]))[name].configs
        if all(configs.get(key) == value for key, value in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise TopicsError(f"config change of {name} did not show within {_PROPAGATION_DEADLINE_S:.0f}s")
        await asyncio.sleep(0.1)
