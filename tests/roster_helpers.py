"""Building events for roster tests, and an in-memory reference run of the roster rules."""

from __future__ import annotations

import json

from schemas import AgentStatusEvent, decode_agent_status_event
from tests.samples import payload

T0 = 1_700_000_000_000


def event(agent: int | str, ccs: list[str], status: str = "available", at_s: float = 0, **fields) -> AgentStatusEvent:
    """An event for ``agent`` at ``T0 + at_s`` seconds, on duty for ``ccs``."""
    date = T0 + int(at_s * 1000)
    fields = {"date": date, "event_timestamp": date + 50, **fields}
    data = payload(target={"id": agent, "name": f"agent {agent}"}, call_center_ids=ccs, on_duty_status=status,
                   **fields)
    return decode_agent_status_event(json.dumps(data))
