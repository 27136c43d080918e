"""The one root exception of the ingest service and its small subclasses.

Handlers translate each to an HTTP status; the message says what was wrong, never a secret.
"""

from __future__ import annotations

from onduty.env import SettingsError


class IngestError(Exception):
    """Root of every error the ingest service raises on purpose."""


class ConfigurationError(IngestError, SettingsError):
    """The service cannot start with these settings; the message says what to set."""


class VerificationError(IngestError):
    """The body is not an authentic webhook (HTTP 401). ``reason`` is a short, stable label for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class BodyTooLarge(IngestError):
    """The body exceeds the configured limit (HTTP 413)."""


class InvalidEvent(IngestError):
    """An authentic payload that does not match the schema (HTTP 422). It is kept on the rejected topic."""

    def __init__(self, message: str, path: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class SpoolFull(IngestError):
    """Kafka did not acknowledge in time and the spool has no room left (HTTP 503: the sender retries)."""


class SpoolCorrupt(IngestError):
    """A spool file holds bytes that are not a record; raised only for damage before the last record."""


class SpoolLocked(IngestError):
    """Another process holds the spool directory: the service does not start (two writers would corrupt it)."""
