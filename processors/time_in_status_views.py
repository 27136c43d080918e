"""Query API of time in status: ``GET /agents/{id}/time-in-status`` and ``GET /callcenters/{id}/time-in-status``.

Query parameters: ``size`` (one of ``ONDUTY_WINDOWS``, e.g. ``15m``; default the smallest), ``from`` and ``to``
(unix ms, windows starting in ``[from, to)``; default the last day of event time); any other is refused (400).
Closed windows are final; an agent's open ones are answered as counted so far (``final`` false); a call center's
window is the sum of the agent shares received so far (each sent when the agent's window closes), ``final`` once it
closed itself, so its current window is not answered. An agent's closed windows are recomputed from its history,
which is kept for the late horizon: the answer's ``history_from_ms`` says where it starts (null: all of it), and
windows starting earlier are left out (they were published when they closed). Any worker answers:
``processors.query_routing.route_to_owner`` forwards to the owner of the key's partition.
"""

from __future__ import annotations

import faust
import msgspec
from faust.web import Request, Response, View

from onduty.env import format_duration, parse_duration_ms
from processors.query_routing import route_to_owner
from processors.time_in_status_callcenters import contribution_key, sum_window
from processors.time_in_status_stage import TimeInStatusStage
from processors.windows import window_start

DAY_MS = 86_400_000


class QueryError(ValueError):
    """A query parameter the view cannot use; the message names it."""


QUERY_PARAMETERS = ("size", "from", "to")


def parse_range(request: Request, sizes_ms: tuple[int, ...], latest_ms: int | None) -> tuple[int, int, int]:
    query = request.query
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:  # a misspelt parameter must not silently give the defaults
        raise QueryError(f"unknown query parameter {', '.join(map(repr, unknown))}: this query takes "
                         f"{', '.join(QUERY_PARAMETERS)}")
    try:
        size = parse_duration_ms(query["size"]) if "size" in query else min(sizes_ms)
    except ValueError as exc:
        raise QueryError(f"size: {exc}") from None
    if size not in sizes_ms:
        known = ", ".join(format_duration(s) for s in sorted(sizes_ms))
        raise QueryError(f"size: {query.get('size')!r} is not a configured window size ({known})")
    bounds = {}
    for name in ("from", "to"):
        if name in query:
            try:
                bounds[name] = int(query[name])
            except ValueError:
                raise QueryError(f"{name}: {query[name]!r} is not unix milliseconds") from None
    # by default the windows of the last day of event time, up to the one holding the latest (at least that one)
    to_ms = bounds.get("to", window_start(latest_ms or 0, size) + size)
    from_ms = bounds.get("from", to_ms - max(DAY_MS, size))
    if from_ms >= to_ms:
        raise QueryError(f"from ({from_ms}) must be before to ({to_ms})")
    if (to_ms - from_ms) // size > 10_000:
        raise QueryError("the range holds more than 10000 windows; narrow from/to or use a larger size")
    return size, from_ms, to_ms


def register(app: faust.App, stage: TimeInStatusStage) -> None:
    @app.page("/agents/{agent_id}/time-in-status")
    @route_to_owner(app, stage.agent_table, "agent_id")
    async def agent_time_in_status(view: View, request: Request, agent_id: str) -> Response:
        found = stage.agent(agent_id)
        if found is None:
            return view.error(404, f"unknown agent: no status event seen for agent id {agent_id!r}",
                              agent_id=agent_id)
        state, chunks = found
        try:
            size, from_ms, to_ms = parse_range(request, stage.sizes_ms, state.counted_until_ms)
        except QueryError as exc:
            return view.error(400, str(exc), agent_id=agent_id)
        windows = stage.core.windows_between(state, chunks, size, from_ms, to_ms)
        return view.json({"agent_id": agent_id, "window_size": format_duration(size), "from_ms": from_ms,
                          "to_ms": to_ms, "history_from_ms": stage.core.history_from_ms(state),
                          "windows": msgspec.to_builtins(windows)})

    @app.page("/callcenters/{call_center_id}/time-in-status")
    @route_to_owner(app, stage.callcenter_table, "call_center_id")
    async def callcenter_time_in_status(view: View, request: Request, call_center_id: str) -> Response:
        state = stage.call_center(call_center_id)
        if state is None:
            return view.error(404, f"unknown call center: no time-in-status window of call center id "
                                   f"{call_center_id!r} yet (its windows appear as its agents' windows close)",
                              call_center_id=call_center_id)
        latest = max((w.start_ms for w in state.windows.values()), default=None)
        try:
            size, from_ms, to_ms = parse_range(request, stage.sizes_ms, latest)
        except QueryError as exc:
            return view.error(400, str(exc), call_center_id=call_center_id)
        windows = []
        start = from_ms - from_ms % size + (size if from_ms % size else 0)
        while start < to_ms:
            window = state.windows.get(contribution_key(size, start))
            if window is not None:
                windows.append(sum_window(call_center_id, window, window.revision, window.revision > 0))
            start += size
        return view.json({"call_center_id": call_center_id, "window_size": format_duration(size),
                          "from_ms": from_ms, "to_ms": to_ms, "windows": msgspec.to_builtins(windows)})
