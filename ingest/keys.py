"""Typed keys of everything the ingest ``web.Application`` holds (one place, no string keys)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ingest.delivery import Delivery
from ingest.intake import Intake
from ingest.metrics import IngestMetrics
from ingest.publisher import Publisher
from ingest.settings import IngestSettings
from ingest.spool import Spool

SETTINGS = web.AppKey("settings", IngestSettings)
INTAKE = web.AppKey("intake", Intake)
METRICS = web.AppKey("metrics", IngestMetrics)
SPOOL = web.AppKey("spool", Spool)
PUBLISHER = web.AppKey("publisher", Publisher)
DELIVERY = web.AppKey("delivery", Delivery)
DRAINER = web.AppKey("drainer", asyncio.Task)
