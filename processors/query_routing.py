"""Routing a query to the worker that owns the key's partition, on any worker, from the first request on.

Faust's ``app.table_route`` asks the producer's partitioner for the key's partition of the table's changelog
topic, which fails (``TypeError``) while this worker's producer has never fetched that topic's metadata, e.g. on a
worker that does not own the key and has not written to that changelog yet. ``route_to_owner`` fetches the
metadata first (a no-op once known), then routes as ``table_route`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import faust

Handler = Callable[..., Awaitable[Any]]


def route_to_owner(app: faust.App, table: faust.Table, match_info: str) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        routed = app.table_route(table=table, match_info=match_info)(handler)

        @wraps(handler)
        async def get(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            await app.producer._ensure_producer().partitions_for(table.changelog_topic.get_topic_name())
            return await routed(view, request, *args, **kwargs)

        return get

    return decorate
