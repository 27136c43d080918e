"""Prometheus text exposition of the service's counters, written by hand (no client library needed)."""

from __future__ import annotations

import bisect
import time
from collections import Counter

from ingest.spool import Spool
from ingest.verification import FAILURE_REASONS

OUTCOMES = ("published", "spooled", "unauthorized", "too_large", "invalid", "unavailable")
"""``published``: acknowledged by Kafka; ``spooled``: kept on disk (both 202); then 401, 413, 422, 503."""

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Cumulative-bucket histogram, as Prometheus expects."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        i = bisect.bisect_left(self.buckets, value)  # the first bound >= value
        if i < len(self.counts):
            self.counts[i] += 1

    def render(self, name: str) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip(self.buckets, self.counts):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        lines += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]
        return lines


class IngestMetrics:
    """Everything /metrics reports; handlers and the drainer update it, nothing else reads it."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        self.verification_failures: Counter[str] = Counter({reason: 0 for reason in FAILURE_REASONS})
        self.publish_latency = Histogram(LATENCY_BUCKETS_S)
        self.producer_errors = 0
        self.drained = 0
        self.undeliverable = 0

    def render(self, spool: Spool, kafka_up: bool) -> str:
        now_ms = time.time() * 1000
        oldest = spool.oldest_received_ms
        age_s = max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0
        lines = ["# HELP onduty_ingest_requests_total Webhook requests by outcome.",
                 "# TYPE onduty_ingest_requests_total counter"]
        lines += [f'onduty_ingest_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(self.requests.items())]
        lines += ["# HELP onduty_ingest_verification_failures_total Webhooks refused with 401, by reason.",
                  "# TYPE onduty_ingest_verification_failures_total counter"]
        lines += [f'onduty_ingest_verification_failures_total{{reason="{k}"}} {v}'
                  for k, v in sorted(self.verification_failures.items())]
        lines += ["# HELP onduty_ingest_publish_latency_seconds Time until Kafka acknowledged a webhook's record.",
                  "# TYPE onduty_ingest_publish_latency_seconds histogram"]
        lines += self.publish_latency.render("onduty_ingest_publish_latency_seconds")
        lines += [
            "# HELP onduty_ingest_producer_errors_total Sends Kafka did not acknowledge (timeouts included) and failed "
            "producer starts.",
            "# TYPE onduty_ingest_producer_errors_total counter",
            f"onduty_ingest_producer_errors_total {self.producer_errors}",
            "# HELP onduty_ingest_spool_drained_total Records delivered to Kafka from the spool.",
            "# TYPE onduty_ingest_spool_drained_total counter",
            f"onduty_ingest_spool_drained_total {self.drained}",
            "# HELP onduty_ingest_undeliverable_total Records Kafka refused for good, kept in the spool's "
            "undeliverable/ directory.",
            "# TYPE onduty_ingest_undeliverable_total counter",
            f"onduty_ingest_undeliverable_total {self.undeliverable}",
            "# HELP onduty_ingest_spool_depth Records in the spool waiting for Kafka.",
            "# TYPE onduty_ingest_spool_depth gauge",
            f"onduty_ingest_spool_depth {spool.pending_records}",
            "# HELP onduty_ingest_spool_bytes Bytes in the spool waiting for Kafka.",
            "# TYPE onduty_ingest_spool_bytes gauge",
            f"onduty_ingest_spool_bytes {spool.pending_bytes}",
            "# HELP onduty_ingest_spool_oldest_age_seconds Age of the oldest record waiting in the spool (0 when empty).",
            "# TYPE onduty_ingest_spool_oldest_age_seconds gauge",
            f"onduty_ingest_spool_oldest_age_seconds {age_s:.3f}",
            "# HELP onduty_ingest_kafka_up 1 when events go straight to Kafka, 0 while they go to the spool.",
            "# TYPE onduty_ingest_kafka_up gauge",
            f"onduty_ingest_kafka_up {int(kafka_up)}",
        ]
        return "\n".join(lines) + "\n"
