"""One agent's day as a sequence of Dialpad wire payloads: pure, seeded, no I/O.

The behaviour is a small state machine with realistic dwell times: available for a few minutes, calls of a few
minutes followed by wrapup, breaks with reasons, now and then a change of the call centers the agent is on duty
for (joining one, toggling one off), and a log-off (``unavailable`` with no call centers) at the end of each shift.
Payload variants Dialpad is known to send are mixed in: ids as JSON numbers or strings, ``phone`` or
``phone_number``, a null ``powerdialer_session``, a missing ``availability_status``, rarely an ``event_timestamp``
with one digit too many (like the documentation's own sample).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: Break reasons with their (min, max) length in minutes; ``None`` means the reason field is left out.
BREAKS: tuple[tuple[str | None, float, float, float], ...] = (
    # reason, weight, min minutes, max minutes
    ("lunch", 0.18, 30, 60),
    ("snack break for 10", 0.22, 9, 11),
    ("meeting", 0.12, 15, 45),
    ("training", 0.06, 20, 60),
    ("restroom", 0.20, 2, 6),
    ("", 0.12, 1, 5),
    (None, 0.10, 1, 5),
)

#: ``availability_status`` by ``on_duty_status``: unavailable in a call or off duty, available otherwise.
AVAILABILITY = {
    "available": "available",
    "wrapup": "available",
    "occupied": "unavailable",
    "busy": "unavailable",
    "unavailable": "unavailable",
}


@dataclass(frozen=True)
class AgentProfile:
    """Who an agent is and how its payloads look; fixed for the whole simulation."""

    index: int
    agent_id: int
    name: str
    email: str
    phone: str
    phone_field: str
    """``phone`` (as in Dialpad's sample payload) or ``phone_number`` (as in its field table)."""
    home_call_centers: tuple[str, ...]
    powerdialer: bool


@dataclass(frozen=True)
class AgentEvent:
    """One status change of one agent: the wire payload and when Dialpad first tries to send it."""

    agent_id: str
    date_ms: int
    send_ms: int
    """When the first delivery attempt leaves Dialpad (event time plus the webhook's generation delay)."""
    payload: dict[str, Any]


def call_center_ids(count: int) -> list[str]:
    """Stable 16-digit call center ids, like Dialpad's."""
    return [str(5_883_344_555_555_555 + 104_729 * i) for i in range(count)]


def make_profile(index: int, all_call_centers: list[str], rng: random.Random) -> AgentProfile:
    """An agent on duty for one call center (most), two or three."""
    how_many = rng.choices((1, 2, 3), weights=(0.70, 0.22, 0.08))[0]
    how_many = min(how_many, len(all_call_centers))
    # earlier call centers are bigger, like a main line and a few specialised queues
    weights = [1.0 / (1 + i) for i in range(len(all_call_centers))]
    home: set[str] = set()
    while len(home) < how_many:
        home.add(rng.choices(all_call_centers, weights=weights)[0])
    return AgentProfile(
        index=index,
        agent_id=5_728_255_400_000_000 + 7_919 * index,
        name=f"agent {index}",
        email=f"agent{index}@example.com",
        phone=f"+1555{index:07d}",
        phone_field=rng.choice(("phone", "phone_number")),
        home_call_centers=tuple(sorted(home)),
        powerdialer=rng.random() < 0.05,
    )


def _minutes(rng: random.Random, low: float, high: float) -> int:
    return int(rng.uniform(low, high) * MINUTE_MS)


def _call_ms(rng: random.Random) -> int:
    # lognormal with a median of 3 minutes, clipped to 10 s .. 40 min
    return int(min(max(rng.lognormvariate(math.log(180), 0.7), 10), 2400) * SECOND_MS)


class _AgentDay:
    """Builds one agent's events; kept as a class only to share the rng and the running state."""

    def __init__(self, profile: AgentProfile, all_call_centers: list[str], rng: random.Random) -> None:
        self.profile = profile
        self.all_call_centers = all_call_centers
        self.rng = rng
        self.events: list[AgentEvent] = []
        self.on_duty: set[str] = set()
        self.status = "unavailable"
        self.reason: str | None = ""
        self.session: str | None = None
        self.break_ms = 0

    def emit(self, date_ms: int) -> None:
        rng, p = self.rng, self.profile
        delay_ms = rng.randint(30, 900)
        event_timestamp = date_ms + delay_ms
        if rng.random() < 0.0005:
            event_timestamp = event_timestamp * 10 + rng.randint(0, 9)  # one digit too many, as in the spec sample
        target: dict[str, Any] = {
            p.phone_field: p.phone,
            "type": "user",
            "email": p.email,
            "name": p.name,
            "id": p.agent_id if rng.random() < 0.5 else str(p.agent_id),
        }
        payload: dict[str, Any] = {
            "call_center_ids": sorted(self.on_duty),
            "target": target,
            "on_duty_status": self.status,
            "powerdialer_session": self.session,
            "powerdialer_mode": self.session is not None,
            "date": date_ms,
            "event_timestamp": event_timestamp,
        }
        if self.reason is not None:
            payload["on_duty_status_reason"] = self.reason
        if rng.random() >= 0.01:
            payload["availability_status"] = AVAILABILITY.get(self.status, "unavailable")
        self.events.append(AgentEvent(str(p.agent_id), date_ms, date_ms + delay_ms, payload))

    def shift(self, start_ms: int, end_ms: int, stream_end_ms: int) -> None:
        """Log on at ``start_ms``, work, log off at ``end_ms`` (if that is still inside the stream)."""
        rng = self.rng
        self.on_duty = set(self.profile.home_call_centers)
        self.status, self.reason = "available", ""
        self.session = f"pd-{rng.getrandbits(48):012x}" if self.profile.powerdialer else None
        t = start_ms
        self.emit(t)
        while True:
            t += self.step_and_dwell()
            if t >= end_ms:
                break
            self.emit(t)
        if end_ms < stream_end_ms:
            self.on_duty, self.status, self.reason, self.session = set(), "unavailable", "", None
            self.emit(end_ms)

    def step_and_dwell(self) -> int:
        """Move to the next state; return how long the previous one lasted (at least one second)."""
        rng, status = self.rng, self.status
        if status == "available":
            dwell = int(min(max(rng.expovariate(1 / 90), 2), 1200) * SECOND_MS)
            roll = rng.random()
            if roll < 0.80:
                self.status, self.reason = "occupied", ""
            elif roll < 0.88:
                self.take_break()
            elif roll < 0.93:
                self.status, self.reason = "busy", ""
            else:
                self.change_call_centers()
        elif status == "occupied":
            dwell = _call_ms(rng)
            self.status = "wrapup" if rng.random() < 0.9 else "available"
            self.reason = ""
        elif status == "wrapup":
            dwell = int(rng.uniform(15, 120) * SECOND_MS)
            self.status, self.reason = "available", ""
        else:  # busy, unavailable (a break), anything else: back to available
            dwell = self.break_ms if status == "unavailable" else int(rng.uniform(30, 300) * SECOND_MS)
            self.status, self.reason = "available", ""
        return max(dwell, SECOND_MS) + rng.randint(0, 999)

    def take_break(self) -> None:
        rng = self.rng
        reason, _, low, high = rng.choices(BREAKS, weights=[b[1] for b in BREAKS])[0]
        self.status, self.reason = "unavailable", reason
        self.break_ms = _minutes(rng, low, high)

    def change_call_centers(self) -> None:
        """Toggle off one call center (keeping at least one), or join one more; the status stays available."""
        rng = self.rng
        home = set(self.profile.home_call_centers)
        others = [c for c in self.all_call_centers if c not in self.on_duty]
        if len(self.on_duty) > 1 and rng.random() < 0.5:
            self.on_duty.discard(rng.choice(sorted(self.on_duty)))
        elif self.on_duty != home and rng.random() < 0.7:
            self.on_duty = set(home)  # back to the usual ones
        elif others:
            self.on_duty.add(rng.choice(others))


def agent_events(
    profile: AgentProfile,
    all_call_centers: list[str],
    start_ms: int,
    duration_ms: int,
    rng: random.Random,
) -> list[AgentEvent]:
    """The agent's events in ``[start_ms, start_ms + duration_ms)``: one shift of 6–9 hours per simulated day."""
    day = _AgentDay(profile, all_call_centers, rng)
    end = start_ms + duration_ms
    day_start = start_ms
    while day_start < end:
        span = min(DAY_MS, end - day_start)
        length = min(span, rng.randint(6 * HOUR_MS, 9 * HOUR_MS))
        # a short stream still staggers log-ons over its first minutes instead of one shared millisecond
        offset = rng.randint(0, max(span - length, min(span // 4, 10 * MINUTE_MS)))
        length = min(length, span - offset)
        day.shift(day_start + offset, day_start + offset + length, end)
        day_start += DAY_MS
    return day.events
