"""Settings of a processor worker, read from ``ONDUTY_*`` variables (and overridden by command-line flags)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onduty.env import (
    SettingsError,
    env_bool,
    env_duration_ms,
    env_durations_ms,
    env_int,
    env_str,
    kafka_bootstrap,
)
from schemas.topics import DEFAULT_PARTITIONS, RAW_AGENT_STATUS, topic_name_problem


@dataclass(frozen=True)
class ProcessorSettings:
    """Everything a worker needs; built once and passed in, never read at import."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    raw_topic: str = RAW_AGENT_STATUS
    app_id: str = "onduty-processors"
    """Consumer group and prefix of Faust's internal topics; workers with the same id share the work."""
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int | None = None
    """Replication factor of the internal topics the workers create; None: min(3, number of brokers)."""
    standby_replicas: int = 1
    """Faust standby replicas of each table on other workers, for fast fail-over."""
    web_host: str = "127.0.0.1"
    """The query API's address as other workers reach it (they forward queries to a key's owner)."""
    web_port: int = 6066
    web_bind: str | None = None
    """The address the query API listens on; None: ``web_host``. ``0.0.0.0`` in a container."""
    data_dir: Path = Path("var/processor")
    window_sizes_ms: tuple[int, ...] = (15 * 60_000, 3_600_000, 86_400_000)
    grace_ms: int = 5 * 60_000
    late_horizon_ms: int = 7 * 86_400_000
    idle_advance: bool = True
    """Advance an idle partition's watermark with wall-clock time (live runs only, never for replays)."""
    idle_after_ms: int = 60_000
    """How long a partition must see no events before wall-clock time advances its watermark."""
    session_timeout_ms: int = 30_000
    """How long the group waits for a silent worker before giving its partitions to the others."""
    producer_linger_ms: int = 10
    """How long the producer waits to fill a batch; bounds the added latency of every derived record."""
    batch_size: int = 2500
    """Most events taken per batch (each table key is written once per batch). Reached only while a stream is
    behind: a batch of 2,500 holds the worker's event loop for about a quarter of a second."""
    batch_within_ms: int = 10
    """Wait for a batch to fill under light load: added to the latency of every derived record, once per stage."""
    batch_max_wait_ms: int = 200
    """Wait for a batch to fill while the stream is a full batch behind: larger batches cost far less per event."""
    commit_interval_ms: int = 3_000
    """How often input offsets are committed, each commit preceded by the tables' changelog records: a key
    written many times in an interval costs one changelog record; a crash replays up to this much input."""
    extra: dict[str, str] = field(default_factory=dict)

    def check(self) -> "ProcessorSettings":
        """Refuse settings a worker cannot run with (raise ``SettingsError`` naming the variable); return ``self``."""
        positive = {
            "ONDUTY_PARTITIONS": self.partitions, "ONDUTY_LATE_HORIZON": self.late_horizon_ms,
            "ONDUTY_IDLE_AFTER": self.idle_after_ms, "ONDUTY_SESSION_TIMEOUT": self.session_timeout_ms,
            "ONDUTY_PROCESSOR_BATCH_SIZE": self.batch_size,
            "ONDUTY_PROCESSOR_COMMIT_INTERVAL": self.commit_interval_ms,
        }
        not_negative = {
            "ONDUTY_GRACE": self.grace_ms, "ONDUTY_STANDBY_REPLICAS": self.standby_replicas,
            "ONDUTY_PROCESSOR_BATCH_WITHIN": self.batch_within_ms,
            "ONDUTY_PROCESSOR_BATCH_MAX_WAIT": self.batch_max_wait_ms,
            "ONDUTY_PRODUCER_LINGER_MS": self.producer_linger_ms,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, not {value}")
        for name, value in not_negative.items():
            if value < 0:
                raise SettingsError(f"{name} must not be negative, not {value}")
        sizes = self.window_sizes_ms
        if not sizes or any(size <= 0 for size in sizes) or len(set(sizes)) != len(sizes):
            raise SettingsError("ONDUTY_WINDOWS must list one or more distinct positive window sizes, e.g. 15m,1h,1d")
        problem = topic_name_problem(self.raw_topic)
        if problem is not None:
            raise SettingsError(f"ONDUTY_RAW_TOPIC: {problem}")
        if topic_name_problem(self.app_id) is not None:  # the prefix of the workers' own topics
            raise SettingsError(f"ONDUTY_PROCESSOR_APP_ID: {self.app_id!r} must be a valid Kafka topic name prefix "
                                "(the characters a-z, A-Z, 0-9, '.', '_' and '-')")
        if self.replication_factor is not None and self.replication_factor < 1:
            raise SettingsError(f"ONDUTY_REPLICATION_FACTOR must be positive (0: automatic), "
                                f"not {self.replication_factor}")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ProcessorSettings":
        environ = os.environ if environ is None else environ
        return cls(
            kafka_bootstrap=kafka_bootstrap(environ),
            raw_topic=env_str("RAW_TOPIC", RAW_AGENT_STATUS, environ),
            app_id=env_str("PROCESSOR_APP_ID", "onduty-processors", environ),
            partitions=env_int("PARTITIONS", DEFAULT_PARTITIONS, environ),
            replication_factor=env_int("REPLICATION_FACTOR", 0, environ) or None,
            standby_replicas=env_int("STANDBY_REPLICAS", 1, environ),
            web_host=env_str("PROCESSOR_WEB_HOST", "127.0.0.1", environ),
            web_port=env_int("PROCESSOR_WEB_PORT", 6066, environ),
            web_bind=env_str("PROCESSOR_WEB_BIND", "", environ) or None,
            data_dir=Path(env_str("PROCESSOR_DATA_DIR", "var/processor", environ)),
            window_sizes_ms=tuple(env_durations_ms("WINDOWS", "15m,1h,1d", environ)),
            grace_ms=env_duration_ms("GRACE", "5m", environ),
            late_horizon_ms=env_duration_ms("LATE_HORIZON", "7d", environ),
            idle_advance=env_bool("IDLE_ADVANCE", True, environ),
            idle_after_ms=env_duration_ms("IDLE_AFTER", "60s", environ),
            session_timeout_ms=env_duration_ms("SESSION_TIMEOUT", "30s", environ),
            batch_size=env_int("PROCESSOR_BATCH_SIZE", 2500, environ),
            batch_within_ms=env_duration_ms("PROCESSOR_BATCH_WITHIN", "10ms", environ),
            batch_max_wait_ms=env_duration_ms("PROCESSOR_BATCH_MAX_WAIT", "200ms", environ),
            producer_linger_ms=env_int("PRODUCER_LINGER_MS", 10, environ),
            commit_interval_ms=env_duration_ms("PROCESSOR_COMMIT_INTERVAL", "3s", environ),
        )
