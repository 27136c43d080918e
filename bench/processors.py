"""(b) Processors: input events/s of one ``onduty processor`` worker against a bare aiokafka consume loop, and
(d) replay: the time to process one simulated day of a 5,000-agent contact center from an empty state.

Both pre-fill a fresh raw topic once, then per round: the bare loop over the whole topic (ceiling), and a worker
with a fresh application id (so fresh, empty tables) from the first offset until it has committed everything.
A worker's events/s counts from its first derived record to its last, so its start-up (joining the group,
creating topics) is reported separately.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import msgspec

from bench.common import BenchmarkSkipped, Result, first_line, onduty_has_command, start_processor, unique
from bench.kafka_io import bare_consume, prefill, simulated_day, watch_worker
from onduty.simulator.compare import compare
from onduty.simulator.expected import DEFAULT_WINDOWS_MS, expected_results
from onduty.simulator.verify import end_offsets, read_topics
from onduty.simulator.agents import DAY_MS, HOUR_MS
from onduty.simulator.traffic import SimulationConfig
from schemas import topics as t

log = logging.getLogger(__name__)

OUTPUTS = [t.AGENT_STATE, t.CALLCENTER_AGENTS, t.CALLCENTER_SUMMARY, t.STATUS_INTERVALS, t.AGENT_TIME_IN_STATUS,
           t.CALLCENTER_TIME_IN_STATUS]


def _recent_start(duration_ms: int) -> int:
    # recent event time: the topics keep records by event time, old simulated days would be deleted by retention
    now = int(time.time() * 1000)
    return now - now % DAY_MS - -(-duration_ms // DAY_MS) * DAY_MS


async def _run(name: str, metric: str, bootstrap: str, workdir: Path, config: SimulationConfig, rounds: int,
               deadline_s: float, target: str, limit: int | None = None,
               check: bool = False) -> tuple[Result, Result | None]:
    from bench.common import create_topic

    if not onduty_has_command("processor"):
        raise BenchmarkSkipped("`onduty processor` is not available yet")
    items = simulated_day(config)
    if limit is not None:
        items = items[:limit]
    topic = unique("raw")
    await create_topic(bootstrap, topic, t.DEFAULT_PARTITIONS)
    fill_s = await prefill(bootstrap, topic, items)
    throughput = Result(name, metric, "events/s", "onduty processor (1 worker)", "bare aiokafka loop", target)
    throughput.notes.append(
        f"{len(items):,} deliveries ({config.agents:,} agents, {config.duration_ms // HOUR_MS} h of event time, "
        f"{config.duplicate_share:.0%} duplicates), pre-filled in {fill_s:.1f} s into {t.DEFAULT_PARTITIONS} partitions"
    )
    wall = Result(name + " (wall)", "time to process everything from an empty state", "s",
                  "onduty processor (1 worker)", "bare aiokafka loop", target, higher_is_better=False)
    for round_number in range(rounds):
        began = time.monotonic()
        ceiling = await bare_consume(bootstrap, topic, len(items), deadline_s)
        throughput.ceiling.append(ceiling)
        print(f"  round {round_number + 1}: bare loop {ceiling:,.0f} events/s", file=sys.stderr, flush=True)
        wall.ceiling.append(time.monotonic() - began)
        app_id = unique("processors")
        since = await end_offsets(bootstrap) if check else None
        worker = start_processor(bootstrap, topic, app_id, workdir)
        started = time.monotonic()
        try:
            run = await watch_worker(bootstrap, topic, app_id, OUTPUTS, started, deadline_s, worker.alive,
                                     crashed=worker.crash, cpu_seconds=worker.cpu_seconds)
        except RuntimeError as exc:
            log.error("worker failed: %s\n--- worker log ---\n%s", exc, worker.tail())
            throughput.failure = wall.failure = first_line(exc)
            break
        finally:
            worker.stop()
        throughput.candidate.append(run.events_per_s)
        log.info("output growth (s, records): %s", run.trace)
        per_cpu = f", {run.events_per_cpu_s:,.0f} events per CPU-second" if run.events_per_cpu_s else ""
        print(f"  round {round_number + 1}: worker {run.events_per_s:,.0f} events/s{per_cpu} (start-up "
              f"{run.startup_s:.1f} s, wall {run.wall_s:.1f} s, {run.outputs:,} derived records)",
              file=sys.stderr, flush=True)
        wall.candidate.append(run.wall_s)
        if check:
            wall.notes.append(f"round {round_number + 1}: " + await _check(bootstrap, items, since))
        throughput.notes.append(f"round {round_number + 1}: worker start-up {run.startup_s:.1f} s, "
                                f"processing {run.processing_s:.1f} s{per_cpu}, wall {run.wall_s:.1f} s, "
                                f"{run.outputs:,} derived records")
    return throughput, wall


async def _check(bootstrap: str, items: list[tuple[int, bytes]], since) -> str:
    """Compare the worker's output with the simulator's expected results (rosters, states, complete windows)."""
    expected = await asyncio.to_thread(
        expected_results, (msgspec.json.decode(body) for _, body in items), DEFAULT_WINDOWS_MS)
    result = compare(expected, await read_topics(bootstrap, since, deadline_s=600))
    for problem in result.problems[:5]:
        log.warning("output differs: %s", problem)
    figures = ", ".join(f"{kind} {n - result.mismatches.get(kind, 0):,}/{n:,}" for kind, n in sorted(result.checked.items()))
    verdict = "output equals the expected results" if result.ok else "OUTPUT DIFFERS from the expected results"
    print(f"  {verdict}: {figures}", file=sys.stderr, flush=True)
    return f"{verdict} ({figures} match)"


async def processors_benchmark(bootstrap: str, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    """(b): a slice of a realistic day, enough for several seconds of work per round."""
    events = 20_000 if quick else 100_000
    duration = 8 * HOUR_MS
    config = SimulationConfig(agents=2_000, call_centers=20, seed=11, start_ms=_recent_start(duration),
                              duration_ms=duration, duplicate_share=0.02)
    throughput, _ = await _run("processors", "input events/s per worker", bootstrap, workdir, config, rounds,
                               deadline_s=900, target="≥ 10,000 events/s per worker", limit=events)
    return [throughput]


async def replay_benchmark(bootstrap: str, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    """(d): one simulated day of a 5,000-agent contact center (a tenth of it with ``quick``)."""
    agents = 500 if quick else 5_000
    config = SimulationConfig(agents=agents, call_centers=40, seed=12, start_ms=_recent_start(DAY_MS),
                              duration_ms=DAY_MS, duplicate_share=0.02, close_windows=True)
    throughput, wall = await _run("replay", f"one day of {agents:,} agents", bootstrap, workdir, config, rounds,
                                  deadline_s=3600, target="minutes, not hours", check=True)
    wall.name = "replay"
    wall.metric = f"time to process one day of {agents:,} agents from an empty state"
    wall.notes = throughput.notes + wall.notes
    throughput.name = "replay (rate)"
    throughput.notes = []
    return [wall, throughput]
