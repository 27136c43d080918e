"""Settings of the ingest service, read from ``ONDUTY_*`` variables once at start-up and passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ConfigurationError
from onduty.env import env_bool, env_duration_ms, env_int, env_list, env_str, kafka_bootstrap
from schemas.topics import RAW_AGENT_STATUS, REJECTED_AGENT_STATUS, topic_name_problem

MAX_BODY_LIMIT = 900 * 1024
"""The largest ``max_body_bytes`` allowed: its record (the event, or a rejected payload with its reason) must stay
under the 1 MiB that aiokafka's producer (``max_request_size``) and Kafka's brokers (``message.max.bytes``) accept."""


@dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest service needs. ``webhook_secrets`` never appears in ``repr`` or logs."""

    webhook_secrets: tuple[str, ...] = ()
    allow_unsigned: bool = False
    host: str = "0.0.0.0"
    port: int = 8080
    kafka_bootstrap: str = "127.0.0.1:9092"
    raw_topic: str = RAW_AGENT_STATUS
    rejected_topic: str = REJECTED_AGENT_STATUS
    spool_dir: Path = Path("var/ingest-spool")
    spool_max_bytes: int = 1024 * 1024 * 1024
    """Undelivered bytes the spool may hold; beyond that the webhook answers 503."""
    spool_segment_bytes: int = 16 * 1024 * 1024
    max_body_bytes: int = 64 * 1024
    publish_deadline_ms: int = 500
    """How long a request waits for Kafka's acknowledgement before the event goes to the spool."""
    jwt_leeway_s: int = 30
    """Clock skew tolerated when a token carries ``exp`` or ``nbf``."""
    kafka_request_timeout_ms: int = 10_000
    shutdown_timeout_ms: int = 10_000
    gc_young_threshold: int = 10_000
    """Allocations between collections of the cyclic GC's youngest generation while the service runs (Python's
    default, 700, means a collection every ~100 requests, each walking the objects of every request in flight)."""

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"IngestSettings(port={self.port}, secrets={len(self.webhook_secrets)}, " \
               f"allow_unsigned={self.allow_unsigned}, raw_topic={self.raw_topic!r}, spool_dir={str(self.spool_dir)!r})"

    def check(self) -> "IngestSettings":
        """Refuse settings the service must not run with; return ``self`` for chaining."""
        if not self.webhook_secrets and not self.allow_unsigned:
            raise ConfigurationError(
                "no webhook secret configured: set ONDUTY_WEBHOOK_SECRETS to the secret(s) of the Dialpad "
                "webhook (comma-separated), or set ONDUTY_ALLOW_UNSIGNED=true to accept unsigned JSON "
                "(development only)"
            )
        if self.max_body_bytes <= 0 or self.spool_max_bytes <= 0 or self.publish_deadline_ms <= 0:
            raise ConfigurationError(
                "ONDUTY_MAX_BODY_BYTES, ONDUTY_SPOOL_MAX_BYTES and ONDUTY_PUBLISH_DEADLINE must be positive"
            )
        if self.max_body_bytes > MAX_BODY_LIMIT:
            raise ConfigurationError(
                f"ONDUTY_MAX_BODY_BYTES={self.max_body_bytes} is above {MAX_BODY_LIMIT}: an event that large would "
                "not fit in a Kafka record (the producer's and the broker's default limit is 1 MiB)"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"ONDUTY_INGEST_PORT={self.port} is not a TCP port (0 to 65535)")
        for variable, topic in (("ONDUTY_RAW_TOPIC", self.raw_topic), ("ONDUTY_REJECTED_TOPIC", self.rejected_topic)):
            problem = topic_name_problem(topic)
            if problem is not None:
                raise ConfigurationError(f"{variable}: {problem}")
        if self.gc_young_threshold <= 0:
            raise ConfigurationError("gc_young_threshold must be positive (0 would disable the cyclic GC)")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "IngestSettings":
        environ = os.environ if environ is None else environ
        return cls(
            webhook_secrets=tuple(env_list("WEBHOOK_SECRETS", "", environ)),
            allow_unsigned=env_bool("ALLOW_UNSIGNED", False, environ),
            host=env_str("INGEST_HOST", "0.0.0.0", environ),
            port=env_int("INGEST_PORT", 8080, environ),
            kafka_bootstrap=kafka_bootstrap(environ),
            raw_topic=env_str("RAW_TOPIC", RAW_AGENT_STATUS, environ),
            rejected_topic=env_str("REJECTED_TOPIC", REJECTED_AGENT_STATUS, environ),
            spool_dir=Path(env_str("SPOOL_DIR", "var/ingest-spool", environ)),
            spool_max_bytes=env_int("SPOOL_MAX_BYTES", 1024 * 1024 * 1024, environ),
            max_body_bytes=env_int("MAX_BODY_BYTES", 64 * 1024, environ),
            publish_deadline_ms=env_duration_ms("PUBLISH_DEADLINE", "500ms", environ),
            jwt_leeway_s=env_duration_ms("JWT_LEEWAY", "30s", environ) // 1000,
        ).check()
