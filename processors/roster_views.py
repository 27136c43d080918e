"""Query API of the roster: ``GET /agents/{agent_id}`` and ``GET /callcenters/{call_center_id}``.

Any worker answers any key: ``processors.query_routing.route_to_owner`` forwards the request to the worker that
owns the key's partition.
"""

from __future__ import annotations

from typing import Any

import faust
import msgspec
from faust.web import Request, Response, View

from processors.query_routing import route_to_owner
from processors.roster_stage import RosterStage
from schemas.roster import CallCenterAgentRecord

_to_builtins = msgspec.to_builtins


def register(app: faust.App, stage: RosterStage) -> None:
    @app.page("/agents/{agent_id}")
    @route_to_owner(app, stage.agent_table, "agent_id")
    async def get_agent(view: View, request: Request, agent_id: str) -> Response:
        state = stage.agent_state(agent_id)
        if state is None or state.current is None:
            return view.error(404, f"unknown agent: no status event seen for agent id {agent_id!r}", agent_id=agent_id)
        current = state.current
        return view.json({
            "agent_id": state.agent_id,
            "agent_name": state.agent_name,
            "on_duty_status": current.on_duty_status,
            "availability_status": current.availability_status,
            "on_duty_status_reason": current.on_duty_status_reason,
            "call_center_ids": current.call_center_ids,
            "since_ms": current.since_ms,
            "updated_ms": current.date_ms,
            "version": state.version,
            "late_events": state.late_events,
            "previous": _to_builtins(state.previous) if state.previous else None,
        })

    @app.page("/callcenters/{call_center_id}")
    @route_to_owner(app, stage.summary_table, "call_center_id")
    async def get_call_center(view: View, request: Request, call_center_id: str) -> Response:
        summary = stage.summary(call_center_id)
        if summary is None:
            return view.error(
                404, f"unknown call center: no agent has been on duty for call center id {call_center_id!r}",
                call_center_id=call_center_id,
            )
        return view.json({
            "call_center_id": call_center_id,
            "on_duty_agents": summary.on_duty_agents,
            "agents_by_status": summary.agents_by_status,
            "agents_by_availability": summary.agents_by_availability,
            "as_of_ms": summary.as_of_ms,
            "agents": [_agent_entry(entry) for entry in stage.on_duty_agents(call_center_id)],
        })


def _agent_entry(entry: CallCenterAgentRecord) -> dict[str, Any]:
    return {
        "agent_id": entry.agent_id,
        "agent_name": entry.agent_name,
        "on_duty_status": entry.on_duty_status,
        "availability_status": entry.availability_status,
        "on_duty_status_reason": entry.on_duty_status_reason,
        "since_ms": entry.since_ms,
        "updated_ms": entry.updated_ms,
    }
