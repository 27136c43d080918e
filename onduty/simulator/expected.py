"""The exact expected results of a stream, straight from ``docs/semantics.md``, independent of ``processors/``.

Written to be obviously right rather than fast: decode every delivery, drop repeated dedup identities, sort each
agent's events by ``(date, event_timestamp or 0, identity)``, walk consecutive pairs as intervals, cut each
interval at window boundaries with a loop. Only the schema contract (``schemas``) is shared with the processors.

Windows are reported only when they are **complete**: they end at or before ``complete_until_ms``, the lowest
watermark over the raw topic's partitions (each partition's highest ``date`` minus the grace; agents are placed on
partitions by Kafka's default partitioner over their id). So every window listed is closed for every agent and
every call center, whichever partition it lives on. A listed owner's missing window has all-zero figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from onduty.env import format_duration
from onduty.simulator.partitions import partition_for
from schemas import AgentStatusEvent, decode_agent_status_payload, dedup_identity
from schemas.topics import DEFAULT_PARTITIONS

DEFAULT_WINDOWS_MS = (15 * 60_000, 3_600_000, 86_400_000)
DEFAULT_GRACE_MS = 5 * 60_000


@dataclass(frozen=True)
class OrderedEvent:
    """An event with its identity, in the total order of the semantics."""

    event: AgentStatusEvent
    identity: str

    @property
    def order_key(self) -> tuple[int, int, str]:
        return (self.event.date, self.event.event_timestamp or 0, self.identity)


def agent_timelines(payloads: Iterable[Mapping[str, Any]]) -> dict[str, list[OrderedEvent]]:
    """Each agent's distinct events in order, whatever the delivery order and duplicates."""
    seen: set[str] = set()
    timelines: dict[str, list[OrderedEvent]] = defaultdict(list)
    for payload in payloads:
        event = decode_agent_status_payload(dict(payload))
        identity = dedup_identity(event)
        if identity in seen:
            continue
        seen.add(identity)
        timelines[event.agent_id].append(OrderedEvent(event, identity))
    for events in timelines.values():
        events.sort(key=lambda e: e.order_key)
    return dict(timelines)


def _empty_totals() -> dict[str, dict[str, int]]:
    return {"ms_by_status": {}, "ms_by_unavailable_reason": {}, "ms_by_availability": {}, "entries_by_status": {}}


def _add(counter: dict[str, int], key: str, amount: int) -> None:
    counter[key] = counter.get(key, 0) + amount


def _add_interval(totals: dict[str, dict[str, int]], event: AgentStatusEvent, ms: int) -> None:
    _add(totals["ms_by_status"], event.on_duty_status, ms)
    if event.on_duty_status == "unavailable":
        _add(totals["ms_by_unavailable_reason"], event.on_duty_status_reason or "", ms)
    _add(totals["ms_by_availability"], event.availability_status or "unknown", ms)


Windows = dict[int, dict[int, dict[str, dict[str, int]]]]
"""window size ms -> window start ms -> totals."""


def _cut(start: int, end: int, size: int) -> Iterable[tuple[int, int]]:
    """``(window start, milliseconds)`` for each window of ``size`` that ``[start, end)`` overlaps."""
    window = start - start % size
    while window < end:
        share = min(end, window + size) - max(start, window)
        if share > 0:
            yield window, share
        window += size


def window_totals(
    timelines: Mapping[str, list[OrderedEvent]], window_sizes_ms: Iterable[int], complete_until_ms: int
) -> tuple[dict[str, Windows], dict[str, Windows]]:
    """Per agent and per call center: the totals of every complete window (``start + size <= complete_until_ms``)."""
    sizes = list(window_sizes_ms)
    agents: dict[str, Windows] = {}
    centers: dict[str, Windows] = defaultdict(lambda: {s: {} for s in sizes})
    for agent_id, events in timelines.items():
        mine: Windows = {s: {} for s in sizes}
        agents[agent_id] = mine
        previous: AgentStatusEvent | None = None
        for position, ordered in enumerate(events):
            event = ordered.event
            event_centers = sorted(set(event.call_center_ids))
            entered = previous is None or previous.on_duty_status != event.on_duty_status
            # the latest event's state stays open, up to the end of the last complete window
            next_date = events[position + 1].event.date if position + 1 < len(events) else None
            for size in sizes:
                window = event.date - event.date % size
                if window + size <= complete_until_ms:
                    if entered:
                        _add(_window(mine, size, window)["entries_by_status"], event.on_duty_status, 1)
                    for center in event_centers:
                        if entered or center not in previous.call_center_ids:  # type: ignore[union-attr]
                            _add(_window(centers[center], size, window)["entries_by_status"],
                                 event.on_duty_status, 1)
                last_complete_end = complete_until_ms - complete_until_ms % size
                end = last_complete_end if next_date is None else min(next_date, last_complete_end)
                for start, ms in _cut(event.date, end, size):
                    _add_interval(_window(mine, size, start), event, ms)
                    for center in event_centers:
                        _add_interval(_window(centers[center], size, start), event, ms)
            previous = event
    return agents, dict(centers)


def _window(windows: Windows, size: int, start: int) -> dict[str, dict[str, int]]:
    return windows[size].setdefault(start, _empty_totals())


def current_states(timelines: Mapping[str, list[OrderedEvent]]) -> dict[str, dict[str, Any]]:
    """Each agent's current state: the latest event, with ``since_ms`` = when it entered that status."""
    states: dict[str, dict[str, Any]] = {}
    for agent_id, events in timelines.items():
        since = events[0].event.date
        for before, after in zip(events, events[1:]):
            if after.event.on_duty_status != before.event.on_duty_status:
                since = after.event.date
        latest = events[-1].event
        states[agent_id] = {
            "on_duty_status": latest.on_duty_status,
            "availability_status": latest.availability_status,
            "on_duty_status_reason": latest.on_duty_status_reason,
            "call_center_ids": sorted(latest.call_center_ids),
            "since_ms": since,
            "updated_ms": latest.date,
        }
    return states


def rosters(states: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Per call center: the on-duty agents' ids and their ``on_duty_status``."""
    result: dict[str, dict[str, str]] = defaultdict(dict)
    for agent_id, state in sorted(states.items()):
        for center in state["call_center_ids"]:
            result[center][agent_id] = state["on_duty_status"]
    return {center: result[center] for center in sorted(result)}


def lowest_watermark(timelines: Mapping[str, list[OrderedEvent]], grace_ms: int, partitions: int | None) -> int:
    """The lowest partition watermark at the end of the stream (``partitions=None``: one partition)."""
    highest: dict[int, int] = {}
    for agent_id, events in timelines.items():
        partition = partition_for(agent_id, partitions) if partitions else 0
        highest[partition] = max(highest.get(partition, 0), max(e.event.date for e in events))
    return min(highest.values(), default=0) - grace_ms


def expected_results(
    payloads: Iterable[Mapping[str, Any]],
    window_sizes_ms: Iterable[int] = DEFAULT_WINDOWS_MS,
    grace_ms: int = DEFAULT_GRACE_MS,
    partitions: int | None = DEFAULT_PARTITIONS,
) -> dict[str, Any]:
    """Everything a correct pipeline ends with after this stream, as one JSON-ready document.

    ``partitions``: the raw topic's partition count, for the lowest watermark (``None``: the last date alone).
    """
    timelines = agent_timelines(payloads)
    sizes = sorted(set(window_sizes_ms))
    last_date = max((e.event.date for events in timelines.values() for e in events), default=0)
    complete_until = lowest_watermark(timelines, grace_ms, partitions)
    agents, centers = window_totals(timelines, sizes, complete_until)
    states = current_states(timelines)

    def jsonable(windows: Mapping[str, Windows]) -> dict[str, Any]:
        return {
            owner: {
                format_duration(size): {str(start): totals for start, totals in sorted(by_start.items())}
                for size, by_start in by_size.items()
            }
            for owner, by_size in sorted(windows.items())
        }

    return {
        "semantics": "docs/semantics.md",
        "events": sum(len(events) for events in timelines.values()),
        "last_date_ms": last_date,
        "grace_ms": grace_ms,
        "complete_until_ms": complete_until,
        "partitions": partitions,
        "complete_windows": (
            "only windows with start + size <= complete_until_ms are listed: the lowest partition watermark "
            "(highest date on the partition minus the grace) at the end of the stream, so they are closed on every "
            "partition; later windows are still open; a listed owner's missing window is all zeros"
        ),
        "window_sizes": {format_duration(size): size for size in sizes},
        "agents": jsonable(agents),
        "call_centers": jsonable(centers),
        "agent_states": dict(sorted(states.items())),
        "rosters": rosters(states),
    }
