"""Records of the time-in-status topics: status intervals, per-agent and per-call-center window totals, late events.

All times are unix milliseconds UTC of event time (the events' ``date``). Window totals are full totals, never
deltas: a consumer that keeps the last record per key (the topics are compacted) has the right answer.
"""

from __future__ import annotations

import msgspec

from schemas.agent_status import AgentStatusEvent


class StatusInterval(msgspec.Struct):
    """``onduty.status-intervals.v1`` (key = agent id): a closed interval ``[start_ms, end_ms)`` in one status.

    Every field is always written (no ``omit_defaults``): msgspec omits a default by identity, so a value restored
    from a changelog would be written where a fresh one is omitted, and two runs would differ byte for byte.

    An interval is identified by ``(agent_id, start_ms)``: when a late event splits an interval already published,
    the shortened interval is published again with the same ``start_ms`` (``late`` set) and supersedes it.
    """

    agent_id: str
    """The agent's Dialpad user id, as a string."""
    on_duty_status: str
    """The status held during the interval."""
    start_ms: int
    """Event time (unix ms) at which the interval starts: the ``date`` of the event that began it."""
    end_ms: int
    """Event time (unix ms) at which the interval ends (exclusive): the ``date`` of the next event."""
    duration_ms: int
    """``end_ms - start_ms``, in milliseconds."""
    call_center_ids: list[str] = []
    """The call centers the agent was on duty for during the interval."""
    on_duty_status_reason: str = ""
    """The reason the agent gave (empty when none)."""
    availability_status: str = "unknown"
    """Dialpad's availability during the interval (``unknown`` when not sent)."""
    late: bool = False
    """True when a late event produced this record; it supersedes any earlier record with the same start."""


class WindowTotals(msgspec.Struct, omit_defaults=True):
    """Time in status within one window: milliseconds and entry counts, keyed by name."""

    ms_by_status: dict[str, int] = {}
    """Milliseconds in each ``on_duty_status``."""
    ms_by_unavailable_reason: dict[str, int] = {}
    """Milliseconds in status ``unavailable``, by ``on_duty_status_reason`` (no reason: key ``""``)."""
    ms_by_availability: dict[str, int] = {}
    """Milliseconds by ``availability_status`` (not sent: key ``unknown``)."""
    entries_by_status: dict[str, int] = {}
    """Number of entries into each status whose event ``date`` lies in the window."""


class AgentTimeInStatus(msgspec.Struct, omit_defaults=True):
    """``onduty.agent-time-in-status.v1`` (compacted, key = ``<agent id>:<window size>:<window start ms>``).

    The full totals of one agent in one window. Published when the window closes (``final``), and again with a
    higher ``revision`` whenever a late event changes them.
    """

    agent_id: str
    """The agent's Dialpad user id, as a string."""
    window_size: str
    """The window size as in ``ONDUTY_WINDOWS``, e.g. ``15m``, ``1h``, ``1d``."""
    window_size_ms: int
    """The window size in milliseconds."""
    window_start_ms: int
    """Start of the window (inclusive), a multiple of ``window_size_ms`` since the epoch."""
    window_end_ms: int
    """End of the window (exclusive)."""
    revision: int
    """Grows with every re-emission within a run (not by one). Keep the last record per key in partition order:
    after a worker crash a correct re-emission may carry a lower revision."""
    final: bool
    """True once the watermark has passed the window end; false only in query answers for open windows."""
    totals: WindowTotals
    """The agent's time in status within the window."""


class CallCenterTimeInStatus(msgspec.Struct, omit_defaults=True):
    """``onduty.callcenter-time-in-status.v1`` (compacted, key = ``<call center id>:<window size>:<window start ms>``).

    The agents' time summed over the time each was on duty for the call center (agent-time: an agent on duty for
    two call centers counts fully in each).
    """

    call_center_id: str
    """The call center."""
    window_size: str
    """The window size as in ``ONDUTY_WINDOWS``, e.g. ``15m``."""
    window_size_ms: int
    """The window size in milliseconds."""
    window_start_ms: int
    """Start of the window (inclusive)."""
    window_end_ms: int
    """End of the window (exclusive)."""
    revision: int
    """Grows by one with every emission within a run. Keep the last record per key in partition order: after a
    worker crash a correct re-emission may carry a lower revision."""
    final: bool
    """True once every source partition's watermark has passed the window end."""
    agents: int
    """How many agents were on duty for the call center at some time in the window."""
    totals: WindowTotals
    """The summed time in status."""


class LateEvent(msgspec.Struct, omit_defaults=True):
    """``onduty.late-events.v1`` (key = agent id): an event time-in-status did not count, and why."""

    agent_id: str
    """The agent's Dialpad user id, as a string."""
    reason: str
    """``beyond_late_horizon``, ``date_in_future`` or ``date_before_2001`` (probably seconds, not milliseconds)."""
    date_ms: int
    """The event's ``date`` (unix ms)."""
    watermark_ms: int | None
    """The partition's watermark when the event was seen (unix ms), if any."""
    event: AgentStatusEvent
    """The event itself."""
