"""The simulator's file format: JSON lines of deliveries, and the expected results next to them.

Each line is one delivery, in sending order: ``{"send_ms": <event-time ms>, "kind": "first"|"duplicate"|"late",
"payload": {<Dialpad wire payload>}}``. ``send_ms`` is when Dialpad sends it, on the event-time clock, so a replay
can keep (or compress) the original pacing. ``FILE.expected.json`` holds :func:`expected_results` for the same
deliveries plus the simulation's configuration.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from onduty.simulator.traffic import Delivery, Simulation

_encoder = msgspec.json.Encoder()


class _Line(msgspec.Struct):
    send_ms: int
    payload: dict[str, Any]
    kind: str = "first"


_line_decoder = msgspec.json.Decoder(_Line)


def expected_path(events_path: Path) -> Path:
    """``day.jsonl`` -> ``day.jsonl.expected.json``."""
    return events_path.with_name(events_path.name + ".expected.json")


def write_deliveries(path: Path, deliveries: Iterable[Delivery]) -> int:
    """Write deliveries as JSON lines; return how many."""
    count = 0
    with path.open("wb") as out:
        for delivery in deliveries:
            out.write(_encoder.encode(_Line(delivery.send_ms, delivery.payload, delivery.kind)))
            out.write(b"\n")
            count += 1
    return count


def read_deliveries(path: Path) -> Iterator[Delivery]:
    """The deliveries of a file written by :func:`write_deliveries` (blank lines skipped)."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = _line_decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{number}: not a simulator delivery line: {exc}") from None
            yield Delivery(item.send_ms, item.payload, item.kind)


def write_expected(path: Path, simulation: Simulation, expected: dict[str, Any]) -> None:
    """The expected results, with the configuration that produced them (human-readable, stable key order)."""
    document = {"simulation": dataclasses.asdict(simulation.config),
                "deliveries": len(simulation.deliveries), **expected}
    path.write_text(json.dumps(document, indent=1) + "\n")
