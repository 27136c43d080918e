"""(a) Ingest: the full service (verify, validate, acknowledged publish) against a bare aiohttp handler that
answers 202, at 64 connections, requests/s and p50/p99 latency.

The load itself is the ingest developer's ``bench/ingest_load.py`` (issue 3): its servers run in their own
processes pinned to CPU 0, its load generator and the Kafka broker on CPU 1 (wrk when it is on PATH, else
its aiohttp client in this process; the notes say which). This module only runs its scenarios for several rounds and turns the
figures into table rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bench.common import BenchmarkSkipped, Result, source_dir, unique


async def ingest_benchmark(bootstrap: str | None, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    try:
        from bench import ingest_load
    except ImportError as exc:
        raise BenchmarkSkipped(f"bench/ingest_load.py (the ingest load check, issue 3) is not usable: {exc}") from None
    if bootstrap is None:
        raise BenchmarkSkipped("needs a Kafka broker")
    pin = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    args = argparse.Namespace(bootstrap=bootstrap, requests=5_000 if quick else 20_000, connections=64,
                              max_seconds=60.0, pin=pin, generator="auto", source=source_dir())
    generator = ingest_load.generator_of(args)
    topic = unique("ingest-load")
    await ingest_load.create_topic(bootstrap, topic)
    bodies = await asyncio.to_thread(ingest_load.tokens, 5_000 if quick else 20_000)
    rps = Result("ingest", "requests/s at 64 connections", "req/s", "full service", "bare aiohttp 202",
                 "≥ 0.5× the bare handler")
    p50 = Result("ingest", "latency p50 at 64 connections", "ms", "full service", "bare aiohttp 202", "",
                 higher_is_better=False)
    p99 = Result("ingest", "latency p99 at 64 connections", "ms", "full service", "bare aiohttp 202", "p99 < 20 ms",
                 higher_is_better=False)
    paced_p99 = Result("ingest", "latency p99 at half the bare rate, open loop", "ms", "full service",
                       "bare aiohttp 202", "p99 < 20 ms", higher_is_better=False)
    cpu_ratios, paced_rates, kept_up = [], [], []
    before = os.sched_getaffinity(0) if pin else None
    try:
        if pin:
            os.sched_setaffinity(0, {1})
        for round_number in range(rounds):
            # ingest_load drives its own event loop: run it in a thread so as not to nest loops
            results = {kind: await asyncio.to_thread(ingest_load.measure, kind, args, bodies, topic)
                       for kind in ("bare", "full")}
            for result, target in ((rps, "rps"), (p50, "p50_ms"), (p99, "p99_ms")):
                result.ceiling.append(results["bare"][target])
                result.candidate.append(results["full"][target])
            rate = 0.5 * results["bare"]["rps"]  # the target's rate, offered to both in an open loop
            paced = {kind: await asyncio.to_thread(ingest_load.measure, kind, args, bodies, topic, None, rate)
                     for kind in ("bare", "full")}
            paced_p99.ceiling.append(paced["bare"]["p99_ms"])
            paced_p99.candidate.append(paced["full"]["p99_ms"])
            paced_rates.append(rate)
            kept_up.append(paced["full"]["rps"] / rate)
            cpu = {kind: r["server_cpu"] / r["rps"] for kind, r in results.items()}
            cpu_ratios.append(cpu["bare"] / cpu["full"])
            print(f"  round {round_number + 1}: bare {results['bare']['rps']:,.0f} req/s, full "
                  f"{results['full']['rps']:,.0f} req/s (p99 {results['full']['p99_ms']:.1f} ms), statuses "
                  f"{results['full']['statuses']}, {generator} CPU {results['full']['client_cpu']:.0%}; at "
                  f"{rate:,.0f} req/s paced: full p99 {paced['full']['p99_ms']:.1f} ms (server CPU "
                  f"{paced['full']['server_cpu']:.0%}), bare p99 {paced['bare']['p99_ms']:.1f} ms",
                  file=sys.stderr, flush=True)
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    if generator == "wrk":
        amount = (f"wrk (one thread, {len(bodies):,} distinct signed events in rotation), about "
                  f"{args.requests:,} requests per scenario and round (5 s at least) after a 2 s warm-up")
        caveat = ""
    else:
        amount = (f"the Python aiohttp load generator (wrk not on PATH), {args.requests:,} requests per scenario "
                  "and round after a warm-up")
        caveat = (". A Python load generator saturates before a bare server does, so the ratio is an upper bound "
                  "and the latencies partly its own")
    rps.notes.append(
        f"{amount}; servers pinned to CPU 0, the generator and the Kafka broker to CPU 1"
        f"{'' if pin else ' (not pinned: one CPU)'}; "
        f"server CPU per request bare/full {', '.join(f'{x:.2f}' for x in cpu_ratios)} (the ratio one saturated "
        f"core would give){caveat}")
    paced_p99.notes.append(
        f"each round, both servers offered half the bare handler's closed-loop rate of that round "
        f"({', '.join(f'{r:,.0f}' for r in paced_rates)} req/s) by a Python client that paces request n at n/rate "
        f"over the same 64 connections, whether or not earlier ones were answered, and counts a latency from when "
        f"the request was due if the server kept it waiting (as wrk2 does); the full service answered "
        f"{', '.join(f'{k:.0%}' for k in kept_up)} of the offered rate within the measured seconds")
    return [rps, p50, p99, paced_p99]
