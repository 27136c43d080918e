"""Sample payloads shared by tests: the spec's own sample and a builder for variations."""

from __future__ import annotations

import copy
from typing import Any

#: The sample payload from Dialpad's documentation, verbatim (including its 14-digit event_timestamp).
SPEC_SAMPLE: dict[str, Any] = {
    "call_center_ids": ["5883344555555555", "6214545667777777"],
    "target": {
        "phone": "+123456789",
        "type": "user",
        "email": "[email protected]",
        "name": "nice agent",
        "id": 5728255400000000,
    },
    "on_duty_status": "unavailable",
    "powerdialer_session": None,
    "on_duty_status_reason": "snack break for 10",
    "powerdialer_mode": False,
    "date": 1620328863056,
    "availability_status": "unavailable",
    "event_timestamp": 16203288633333,
}


def payload(**overrides: Any) -> dict[str, Any]:
    """The spec sample with top-level fields replaced (``target`` is merged, not replaced)."""
    result = copy.deepcopy(SPEC_SAMPLE)
    target = overrides.pop("target", None)
    result.update(overrides)
    if target is not None:
        result["target"] = {**result["target"], **target}
    return result
