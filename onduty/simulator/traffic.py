"""A whole contact center's traffic: every agent's events, then the deliveries Dialpad would make of them.

Pure and seeded: the same ``SimulationConfig`` always gives the same deliveries, byte for byte. Each agent has
its own random stream (derived from the seed and its index), so adding agents does not change the others.

Deliveries model Dialpad's at-least-once webhooks:

* a **duplicate** is a second delivery of the same payload, 0.1 / 0.3 / 0.7 / 1.5 s after the first (the
  cumulative delays of Dialpad's four retries);
* an **out-of-order** event has its delivery held back until just after the agent's *next* event was delivered
  (a retry that loses the race). Real retries only wait up to 1.5 s, which rarely overtakes one agent's next
  status change; the simulator makes it happen on purpose, for the share asked, so that ordering is exercised.

Both shares are exact: ``round(share * events)`` deliveries are duplicates, and as many events arrive after a
later event of the same agent (when enough events have a successor; chosen events are never adjacent).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from onduty.simulator.agents import (
    HOUR_MS,
    AgentEvent,
    agent_events,
    call_center_ids,
    make_profile,
)

#: Monday 2025-03-03 00:00:00 UTC: the default start, so that a seed alone fixes the output.
DEFAULT_START_MS = 1_740_960_000_000

#: Cumulative delays of Dialpad's four retries of a status event (0.1, 0.2, 0.4, 0.8 s).
RETRY_OFFSETS_MS = (100, 300, 700, 1500)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Shares are fractions of the number of distinct events."""

    agents: int = 50
    call_centers: int = 3
    seed: int = 1
    start_ms: int = DEFAULT_START_MS
    duration_ms: int = 8 * HOUR_MS
    duplicate_share: float = 0.02
    out_of_order_share: float = 0.01
    close_windows: bool = False
    """Append, for every agent, its unchanged current state at ``start + duration + grace``, so that every window
    inside the duration closes on every partition. Such an event is no entry and changes no earlier total."""
    grace_ms: int = 5 * 60_000

    def __post_init__(self) -> None:
        if self.agents < 1 or self.call_centers < 1:
            raise ValueError("need at least one agent and one call center")
        if self.duration_ms <= 0:
            raise ValueError("duration must be positive")
        for name in ("duplicate_share", "out_of_order_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass(frozen=True)
class Delivery:
    """One HTTP POST Dialpad makes: the payload and when it is sent (event-time milliseconds)."""

    send_ms: int
    payload: dict[str, Any]
    kind: str = "first"
    """``first``, ``duplicate`` (a retry of an already delivered payload) or ``late`` (held back, out of order)."""


@dataclass
class Simulation:
    """The distinct events (in generation order) and their deliveries (in sending order)."""

    config: SimulationConfig
    events: list[AgentEvent]
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """The payloads in delivery order, duplicates included: what the ingest receives."""
        return [d.payload for d in self.deliveries]


def generate(config: SimulationConfig) -> Simulation:
    """Simulate ``config.agents`` agents across ``config.call_centers`` call centers."""
    events = [event for agent in agents_events(config) for event in agent]
    simulation = Simulation(config, events)
    simulation.deliveries = schedule_deliveries(
        events, config.duplicate_share, config.out_of_order_share, random.Random(f"{config.seed}:deliveries")
    )
    return simulation


def agents_events(config: SimulationConfig) -> Iterator[list[AgentEvent]]:
    """Each agent's events in turn (one agent at a time, for callers that cannot hold a whole day of dicts)."""
    centers = call_center_ids(config.call_centers)
    for index in range(config.agents):
        rng = random.Random(f"{config.seed}:agent:{index}")
        profile = make_profile(index, centers, rng)
        mine = agent_events(profile, centers, config.start_ms, config.duration_ms, rng)
        if config.close_windows and mine:
            mine.append(closing_event(mine[-1], config.start_ms + config.duration_ms + config.grace_ms, rng))
        yield mine


def closing_event(last: AgentEvent, date_ms: int, rng: random.Random) -> AgentEvent:
    """The agent's current state again, at ``date_ms``: it only moves the watermark."""
    delay_ms = rng.randint(30, 900)
    payload = {**last.payload, "date": date_ms, "event_timestamp": date_ms + delay_ms}
    return AgentEvent(last.agent_id, date_ms, date_ms + delay_ms, payload)


def schedule_deliveries(
    events: list[AgentEvent], duplicate_share: float, out_of_order_share: float, rng: random.Random
) -> list[Delivery]:
    """Turn events into deliveries with exact shares of duplicates and out-of-order arrivals."""
    send_ms = [e.send_ms for e in events]
    kinds = ["first"] * len(events)

    next_of_agent: dict[int, int] = {}
    previous_of_agent: dict[int, int] = {}
    by_agent: dict[str, list[int]] = defaultdict(list)
    for i, event in enumerate(events):
        by_agent[event.agent_id].append(i)
    for indexes in by_agent.values():
        indexes.sort(key=lambda i: (events[i].date_ms, i))
        next_of_agent.update(zip(indexes, indexes[1:]))
        previous_of_agent.update(zip(indexes[1:], indexes))

    wanted = round(out_of_order_share * len(events))
    candidates = sorted(next_of_agent)
    rng.shuffle(candidates)
    held: list[int] = []
    blocked: set[int] = set()
    for i in candidates:
        if len(held) >= wanted:
            break
        if i in blocked:
            continue
        held.append(i)
        # never hold a neighbour too: each held event must be overtaken by a successor that is on time
        blocked.update((i, next_of_agent[i], previous_of_agent.get(i, i)))
    for i in held:
        send_ms[i] = send_ms[next_of_agent[i]] + rng.randint(1, RETRY_OFFSETS_MS[-1])
        kinds[i] = "late"

    deliveries = [Delivery(send_ms[i], e.payload, kinds[i]) for i, e in enumerate(events)]
    for i in rng.sample(range(len(events)), round(duplicate_share * len(events))):
        deliveries.append(Delivery(send_ms[i] + rng.choice(RETRY_OFFSETS_MS), events[i].payload, "duplicate"))
    # stable sort: deliveries sent in the same millisecond keep a deterministic order
    deliveries.sort(key=lambda d: d.send_ms)
    return deliveries
