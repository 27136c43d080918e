"""Per-call-center time in status: summing the agents' contributions, idempotently. Pure, no Faust.

The agent stage sends, for every closed (or corrected) agent window, the agent's full totals for each call
center it was on duty for, with the agent's revision. Per call center and window the stage keeps each agent's
latest contribution (in arrival order: an identical redelivery changes nothing), and emits the sum once the
minimum watermark over the source partitions has passed the window end; a later contribution to a closed
window re-emits it with the next revision.
"""

from __future__ import annotations

import msgspec

from onduty.env import format_duration
from processors.time_in_status import CallCenterContribution, add_totals, empty_totals
from schemas.time_in_status import CallCenterTimeInStatus, WindowTotals


class AgentShare(msgspec.Struct, array_like=True):
    """One agent's latest contribution to a call-center window."""

    revision: int
    totals: WindowTotals


class CallCenterWindow(msgspec.Struct):
    """One window of one call center: each agent's latest totals, and what was emitted."""

    size_ms: int
    start_ms: int
    agents: dict[str, AgentShare] = {}
    revision: int = 0
    """Revision of the latest emitted record (0: not emitted yet)."""


class CallCenterTimeline(msgspec.Struct):
    """What the call-center stage keeps per call center (one table value)."""

    call_center_id: str
    windows: dict[str, CallCenterWindow] = {}
    """Key ``<size ms>:<start ms>``; closed windows are kept until beyond the late horizon."""
    closed_until_ms: int | None = None
    """The minimum source watermark this call center's windows were last closed at."""


class SourceWatermarks(msgspec.Struct):
    """Watermarks of the agent stage's source partitions, as propagated to one re-key partition."""

    by_partition: dict[int, int] = {}

    def minimum(self) -> int | None:
        """The watermark every reporting source partition has passed (None before any report).

        A partition that never had an event has no watermark and does not hold the call centers back; should
        it later bring events of windows already emitted, they are re-emitted with the next revision.
        """
        return min(self.by_partition.values()) if self.by_partition else None


class WatermarkMarker(msgspec.Struct):
    """Internal re-key topic record: source partition ``partition`` has reached ``watermark_ms``."""

    partition: int
    watermark_ms: int


class ContributionBatch(msgspec.Struct, omit_defaults=True):
    """Internal re-key topic record: one agent-stage batch's contributions to the call centers of one partition,
    then the source watermarks that batch reached (applied in this order)."""

    contributions: list[CallCenterContribution] = []
    watermarks: list[WatermarkMarker] = []


def contribution_key(size_ms: int, start_ms: int) -> str:
    return f"{size_ms}:{start_ms}"


def _is_closed(window: CallCenterWindow, watermark_ms: int | None) -> bool:
    return watermark_ms is not None and window.start_ms + window.size_ms <= watermark_ms


def apply_contribution(
    state: CallCenterTimeline, contribution: CallCenterContribution, watermark_ms: int | None
) -> list[CallCenterTimeInStatus]:
    """Keep the agent's contribution if newer; re-emit the window if it was already emitted."""
    key = contribution_key(contribution.window_size_ms, contribution.window_start_ms)
    window = state.windows.get(key)
    if window is None:
        window = state.windows[key] = CallCenterWindow(contribution.window_size_ms, contribution.window_start_ms)
    share = AgentShare(contribution.revision, contribution.totals)
    if window.agents.get(contribution.agent_id) == share:
        return []  # a redelivery: nothing changes
    # The latest arrival wins, not the highest revision: one agent's contributions to one call center come in
    # the order the agent stage emitted them (same re-key partition), and after a replay with other batch
    # boundaries the newest, correct totals may carry a lower revision than what was sent before the crash.
    window.agents[contribution.agent_id] = share
    if window.revision > 0 or _is_closed(window, watermark_ms):
        return [_emit(state.call_center_id, window)]
    return []


def is_forgotten(state: CallCenterTimeline, contribution: CallCenterContribution, late_horizon_ms: int) -> bool:
    """Is the contribution's window one ``close()`` forgets (beyond the late horizon) and no longer kept?

    Such a contribution is dropped: a window made of it alone would replace, as the last record of its key, the
    sum of every agent's share that was emitted before. It happens only when a source partition's first events
    are older than the late horizon of the others' (a replay where one partition starts far behind); the
    agent's own windows still count it.
    """
    key = contribution_key(contribution.window_size_ms, contribution.window_start_ms)
    if key in state.windows or state.closed_until_ms is None:
        return False
    return beyond_horizon(contribution.window_size_ms, contribution.window_start_ms,
                          state.closed_until_ms - late_horizon_ms)


def beyond_horizon(size_ms: int, start_ms: int, horizon_ms: int) -> bool:
    """Is the window ``[start_ms, start_ms + size_ms)`` one that ``close()`` forgets at this horizon (the
    watermark minus the late horizon): one more window of margin past its end?"""
    return start_ms + 2 * size_ms <= horizon_ms


def close(state: CallCenterTimeline, watermark_ms: int | None, late_horizon_ms: int) -> list[CallCenterTimeInStatus]:
    """Emit every window not emitted yet that ends at or before the watermark; forget windows beyond the horizon."""
    if watermark_ms is None:
        return []
    records = [
        _emit(state.call_center_id, window)
        for window in sorted(state.windows.values(), key=lambda w: (w.start_ms, w.size_ms))
        if window.revision == 0 and _is_closed(window, watermark_ms)
    ]
    state.closed_until_ms = watermark_ms
    horizon = watermark_ms - late_horizon_ms
    for key, window in list(state.windows.items()):
        if window.revision > 0 and beyond_horizon(window.size_ms, window.start_ms, horizon):
            del state.windows[key]
    return records


def has_open_windows(state: CallCenterTimeline) -> bool:
    return any(window.revision == 0 for window in state.windows.values())


def sum_window(call_center_id: str, window: CallCenterWindow, revision: int, final: bool) -> CallCenterTimeInStatus:
    totals = empty_totals()
    agents = 0
    for share in window.agents.values():
        add_totals(totals, share.totals)
        if any((share.totals.ms_by_status, share.totals.entries_by_status)):
            agents += 1
    return CallCenterTimeInStatus(
        call_center_id=call_center_id, window_size=format_duration(window.size_ms), window_size_ms=window.size_ms,
        window_start_ms=window.start_ms, window_end_ms=window.start_ms + window.size_ms, revision=revision,
        final=final, agents=agents, totals=totals,
    )


def _emit(call_center_id: str, window: CallCenterWindow) -> CallCenterTimeInStatus:
    window.revision += 1
    return sum_window(call_center_id, window, window.revision, True)
