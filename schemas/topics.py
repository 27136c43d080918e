"""Every topic of the pipeline: name, partitioning and cleanup policy, in one place.

Names are versioned (``….v1``): a breaking change to a record gets a new topic, never a new shape
on an old one. The raw topic's name is configurable (``ONDUTY_RAW_TOPIC``); the others are fixed
names that consumers in other systems rely on.
"""

from __future__ import annotations

import re

import msgspec

DEFAULT_PARTITIONS = 8
"""Partition count of every pipeline topic; it bounds how many processor workers share the load."""

RAW_AGENT_STATUS = "dialpad.agent-status.v1"
REJECTED_AGENT_STATUS = "dialpad.agent-status.rejected.v1"
AGENT_STATE = "onduty.agent-state.v1"
CALLCENTER_AGENTS = "onduty.callcenter-agents.v1"
CALLCENTER_SUMMARY = "onduty.callcenter-summary.v1"
STATUS_INTERVALS = "onduty.status-intervals.v1"
AGENT_TIME_IN_STATUS = "onduty.agent-time-in-status.v1"
CALLCENTER_TIME_IN_STATUS = "onduty.callcenter-time-in-status.v1"
DEAD_LETTER = "onduty.dead-letter.v1"
LATE_EVENTS = "onduty.late-events.v1"


class TopicSpec(msgspec.Struct, frozen=True):
    """How one topic is created: its name, partition count and Kafka topic configs."""

    name: str
    cleanup_policy: str
    """``compact`` for tables of latest values (consumers keep the last record per key), else ``delete``."""
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int | None = None
    """Retention for ``delete`` topics, in milliseconds; None keeps the broker default."""
    description: str = ""

    def configs(self) -> dict[str, str]:
        """The topic-level Kafka configs this spec asks for."""
        configs = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


_DAY_MS = 24 * 3600 * 1000
KEEP_FOREVER = -1
"""``retention.ms`` that never deletes by time."""


_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def topic_name_problem(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic name (None: it would not)."""
    if name in (".", "..") or _LEGAL_TOPIC_NAME.fullmatch(name) is None:
        return (f"{name!r} is not a Kafka topic name (1 to 249 of the characters a-z, A-Z, 0-9, '.', '_' and '-'; "
                "not '.' or '..')")
    return None


def pipeline_topics(
    raw_topic: str = RAW_AGENT_STATUS, partitions: int = DEFAULT_PARTITIONS,
    rejected_topic: str = REJECTED_AGENT_STATUS,
) -> list[TopicSpec]:
    """Every topic the ingest service and the processors write, as the documented configuration (the raw and
    rejected topics under the names the ingest is configured with)."""
    keep_30_days = 30 * _DAY_MS
    return [
        # Kept forever: the raw topic is the replayable source of truth, and its message timestamps are event
        # times, so time-based retention would delete a replayed day of history at once.
        TopicSpec(raw_topic, "delete", partitions, KEEP_FOREVER,
                  "Verified, normalised Dialpad agent status events; key = agent id."),
        TopicSpec(rejected_topic, "delete", partitions, keep_30_days,
                  "Authentic events that failed validation, with the reason; key = agent id if known."),
        TopicSpec(AGENT_STATE, "compact", partitions, None,
                  "Current and previous state of each agent; key = agent id."),
        TopicSpec(CALLCENTER_AGENTS, "compact", partitions, None,
                  "One record per on-duty agent per call center, tombstone on leave; key = <call center>:<agent>."),
        TopicSpec(CALLCENTER_SUMMARY, "compact", partitions, None,
                  "On-duty counts by status and availability; key = call center id."),
        TopicSpec(STATUS_INTERVALS, "delete", partitions, keep_30_days,
                  "Each closed status interval of an agent; key = agent id."),
        TopicSpec(AGENT_TIME_IN_STATUS, "compact", partitions, None,
                  "Per-agent window totals; key = <agent>:<window size>:<window start ms>."),
        TopicSpec(CALLCENTER_TIME_IN_STATUS, "compact", partitions, None,
                  "Per-call-center window totals; key = <call center>:<window size>:<window start ms>."),
        TopicSpec(DEAD_LETTER, "delete", partitions, keep_30_days,
                  "Records a processor could not decode, with the reason."),
        TopicSpec(LATE_EVENTS, "delete", partitions, keep_30_days,
                  "Events beyond the late horizon or with implausible timestamps, with the reason."),
    ]
