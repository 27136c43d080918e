"""The ingest service: verify every Dialpad agent status webhook, keep every event, publish it to Kafka.

``create_app(settings)`` builds the aiohttp application; ``onduty ingest`` runs it.
"""

from ingest.app import create_app
from ingest.settings import IngestSettings

__all__ = ["IngestSettings", "create_app"]
