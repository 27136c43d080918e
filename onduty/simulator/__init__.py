"""Realistic, seeded Dialpad agent status traffic and the exact results a correct pipeline must derive from it.

* ``agents``: one agent's day as wire payloads (pure);
* ``traffic``: a whole contact center, with duplicates and out-of-order deliveries like Dialpad's retries (pure);
* ``expected``: the expected windows and rosters, straight from ``docs/semantics.md`` (pure, independent of
  ``processors/``);
* ``files``: the JSON-lines file format; ``posting``: signed webhooks over HTTP (the only I/O edges).
"""

from onduty.simulator.expected import expected_results
from onduty.simulator.traffic import DEFAULT_START_MS, Delivery, Simulation, SimulationConfig, generate

__all__ = ["DEFAULT_START_MS", "Delivery", "Simulation", "SimulationConfig", "expected_results", "generate"]
