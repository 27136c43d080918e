"""Compare what a pipeline published with the simulator's expected results (pure: records in, differences out).

Input: the records of the derived topics as ``(key, value dict or None)`` in partition order; the last record per key
wins, exactly as a consumer of the compacted topics would see them. For time-in-status windows too: after a worker
crash the correct re-emission may carry a lower ``revision`` than a record sent just before it (docs/semantics.md).
Only windows the expected results list as complete are compared; a published window that the expected results do
not list must be all zeros if it lies within the complete range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onduty.env import format_duration

Record = tuple[str, dict[str, Any] | None]

_FIGURES = ("ms_by_status", "ms_by_unavailable_reason", "ms_by_availability", "entries_by_status")


@dataclass
class Comparison:
    """What matched and what did not; ``problems`` holds the first differences, readable."""

    checked: dict[str, int] = field(default_factory=dict)
    mismatches: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    max_problems: int = 20

    @property
    def ok(self) -> bool:
        return not any(self.mismatches.values())

    def check(self, kind: str, equal: bool, problem: str) -> None:
        self.checked[kind] = self.checked.get(kind, 0) + 1
        if not equal:
            self.mismatches[kind] = self.mismatches.get(kind, 0) + 1
            if len(self.problems) < self.max_problems:
                self.problems.append(problem)

    def summary(self) -> str:
        lines = [f"{kind}: {self.checked[kind] - self.mismatches.get(kind, 0)} of {self.checked[kind]} match"
                 for kind in sorted(self.checked)]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def _last_values(records: Iterable[Record]) -> dict[str, dict[str, Any] | None]:
    last: dict[str, dict[str, Any] | None] = {}
    for key, value in records:
        last[key] = value
    return last


def _clean(totals: Mapping[str, Mapping[str, int]] | None) -> dict[str, dict[str, int]]:
    """Totals without zero entries, so ``{}`` and ``{"busy": 0}`` compare equal."""
    totals = totals or {}
    return {name: {k: v for k, v in (totals.get(name) or {}).items() if v} for name in _FIGURES}


def compare_rosters(expected: Mapping[str, Any], callcenter_agents: Iterable[Record], result: Comparison) -> None:
    actual: dict[str, dict[str, str]] = {}
    for key, value in _last_values(callcenter_agents).items():
        if value is not None:
            actual.setdefault(value["call_center_id"], {})[value["agent_id"]] = value["on_duty_status"]
    # every call center seen in the stream, so that an empty roster (everyone logged off) is checked too
    for center in sorted(set(expected["rosters"]) | set(expected.get("call_centers", {})) | set(actual)):
        want, got = expected["rosters"].get(center, {}), actual.get(center, {})
        result.check("rosters", want == got,
                     f"roster {center}: missing {sorted(set(want) - set(got))[:5]}, extra "
                     f"{sorted(set(got) - set(want))[:5]}, other status "
                     f"{sorted(a for a in set(want) & set(got) if want[a] != got[a])[:5]}")


def compare_agent_states(expected: Mapping[str, Any], agent_state: Iterable[Record], result: Comparison) -> None:
    actual = _last_values(agent_state)
    for agent, want in expected["agent_states"].items():
        value = actual.get(agent)
        got = None if value is None else value.get("current", {})
        same = got is not None and got.get("on_duty_status") == want["on_duty_status"] and \
            got.get("since_ms") == want["since_ms"]
        result.check("agent states", same, f"agent {agent}: expected {want['on_duty_status']} since "
                     f"{want['since_ms']}, got {None if got is None else (got.get('on_duty_status'), got.get('since_ms'))}")


def compare_windows(expected: Mapping[str, Any], kind: str, owner_field: str, records: Iterable[Record],
                    result: Comparison) -> None:
    """``kind``: ``agents`` or ``call_centers`` (the expected document's section)."""
    section = expected[kind]
    complete_until = expected["complete_until_ms"]
    sizes = set(expected["window_sizes"].values())
    seen: set[tuple[str, str, str]] = set()
    for value in _last_values(records).values():
        if value is None:
            continue  # a deleted window counts as never published
        size_ms = value["window_size_ms"]
        if size_ms not in sizes or value["window_start_ms"] + size_ms > complete_until:
            continue  # a size not asked for, or a window still open in the expected results
        owner, label, start = value[owner_field], format_duration(size_ms), str(value["window_start_ms"])
        seen.add((owner, label, start))
        want = _clean(section.get(owner, {}).get(label, {}).get(start))
        got = _clean(value.get("totals"))
        result.check(f"{kind} windows", want == got and value.get("final", True),
                     f"{kind} {owner} {label} {start}: expected {want}, got {got} (final {value.get('final')})")
    for owner, by_size in section.items():
        for label, by_start in by_size.items():
            for start, totals in by_start.items():
                if (owner, label, start) not in seen and any(_clean(totals).values()):
                    result.check(f"{kind} windows", False, f"{kind} {owner} {label} {start}: never published")


def compare(expected: Mapping[str, Any], topics: Mapping[str, Iterable[Record]]) -> Comparison:
    """Compare every derived topic given (by name) with the expected results."""
    from schemas import topics as t

    result = Comparison()
    if t.CALLCENTER_AGENTS in topics:
        compare_rosters(expected, topics[t.CALLCENTER_AGENTS], result)
    if t.AGENT_STATE in topics:
        compare_agent_states(expected, topics[t.AGENT_STATE], result)
    if t.AGENT_TIME_IN_STATUS in topics:
        compare_windows(expected, "agents", "agent_id", topics[t.AGENT_TIME_IN_STATUS], result)
    if t.CALLCENTER_TIME_IN_STATUS in topics:
        compare_windows(expected, "call_centers", "call_center_id", topics[t.CALLCENTER_TIME_IN_STATUS], result)
    return result
