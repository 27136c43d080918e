"""Load check of the ingest service (not a test): the full service against a bare aiohttp handler, same run.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/ingest_load.py [--requests 20000]
        [--connections 64] [--max-seconds 60] [--rounds 1] [--no-pin]

Each server runs in its own process on 127.0.0.1 (uvloop when installed), pinned to CPU 0, and the load
generator (aiohttp client, in this process) to CPU 1 when the machine has two. Scenarios:

* ``bare``: reads the body and answers 202 (the ceiling);
* ``full``: ``ingest.create_app`` with HS256 verification, schema validation and acknowledged publishing
  to a real Kafka broker (a fresh topic, a temporary spool).

Bounded in count (``--requests``, after a warm-up) and time (``--max-seconds``) per scenario. Prints
requests/s, p50/p99 latency and the ratio full/bare; with ``--rounds N`` the two alternate N times and the
median and range of each figure follow (a shared machine drifts within seconds). Target (issue 3):
ratio >= 0.5, p99 < 20 ms at 64 connections. A Python load generator is slower than wrk: when it saturates
its core before the bare server does, the ratio is an upper bound; the CPU share of each process is printed
to tell.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
URL_PATH = "/webhooks/dialpad/agent-status"


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# ----- servers (run as ``--serve bare|full``) ------------------------------------------------------------

def serve(kind: str, port: int, bootstrap: str, topic: str, spool_dir: str) -> None:
    from aiohttp import web

    if kind == "bare":
        async def accept(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=202, body=b'{"status":"accepted"}', content_type="application/json")

        app = web.Application()
        app.router.add_post(URL_PATH, accept)
        app.router.add_get("/healthz", lambda request: web.Response(text="ok"))
    else:
        from ingest import IngestSettings, create_app

        app = create_app(IngestSettings(webhook_secrets=(SECRET,), kafka_bootstrap=bootstrap, raw_topic=topic,
                                        spool_dir=Path(spool_dir)))
    profile_to = os.environ.get("ONDUTY_BENCH_PROFILE")  # a file name: cProfile the server into it
    if profile_to:
        import cProfile

        cProfile.runctx("web.run_app(app, host='127.0.0.1', port=port, access_log=None, print=None, loop=new_loop())",
                        globals(), locals(), profile_to)
        return
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=new_loop())


# ----- load generator -----------------------------------------------------------------------------------

def tokens(count: int) -> list[bytes]:
    import jwt

    from tests.samples import payload

    base_ms = int(time.time() * 1000) - 3_600_000
    return [jwt.encode(payload(target={"id": 1_000_000 + i % 500}, date=base_ms + i), SECRET,
                       algorithm="HS256").encode() for i in range(count)]


async def run_load(port: int, bodies: list[bytes], requests: int, connections: int, max_s: float) -> dict:
    import aiohttp

    url = f"http://127.0.0.1:{port}{URL_PATH}"
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    issued = 0

    async def worker(session: aiohttp.ClientSession, quota: int, record: bool, stop_at: float) -> None:
        nonlocal issued
        while issued < quota and time.perf_counter() < stop_at:
            body = bodies[issued % len(bodies)]
            issued += 1
            started = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "application/jwt"}) as response:
                answer = await response.read()
            if record:
                latencies.append(time.perf_counter() - started)
                outcome = f"{response.status}{'-spool' if b'spool' in answer else ''}"
                statuses[outcome] = statuses.get(outcome, 0) + 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        warmup = min(1000, requests // 10)
        await asyncio.gather(*(worker(session, warmup, False, time.perf_counter() + max_s) for _ in range(connections)))
        issued = 0
        cpu_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, requests, True, started + max_s) for _ in range(connections)))
        elapsed = time.perf_counter() - started
        client_cpu = (time.process_time() - cpu_before) / elapsed
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "count": len(latencies), "statuses": statuses,
        "elapsed_s": elapsed, "client_cpu": client_cpu,
    }


async def create_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=8, replication_factor=1)])
    finally:
        await admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str, args: argparse.Namespace, topic: str, spool_dir: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--bootstrap",
                                args.bootstrap, "--topic", topic, "--spool-dir", spool_dir], cwd=ROOT)
    if args.pin:
        os.sched_setaffinity(process.pid, {0})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(1.0)  # let the service connect its producer
                return process, port
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{kind} server did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, args: argparse.Namespace, bodies: list[bytes], topic: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="onduty-bench-spool-") as spool_dir:
        process, port = start_server(kind, args, topic, spool_dir)
        try:
            cpu_before, wall_before = cpu_seconds(process.pid), time.perf_counter()
            result = new_loop().run_until_complete(
                run_load(port, bodies, args.requests, args.connections, args.max_seconds))
            result["server_cpu"] = (cpu_seconds(process.pid) - cpu_before) / (time.perf_counter() - wall_before)
        finally:
            process.terminate()
            process.wait(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=["bare", "full"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    parser.add_argument("--topic", default=f"bench.ingest-load.{uuid.uuid4().hex[:8]}")
    parser.add_argument("--spool-dir")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1, help="alternate bare and full this many times")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.bootstrap, args.topic, args.spool_dir)
        return
    args.pin = args.pin and hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2
    if args.pin:
        os.sched_setaffinity(0, {1})
    bodies = tokens(2000)
    new_loop().run_until_complete(create_topic(args.bootstrap, args.topic))
    print(f"{args.requests} requests per scenario, {args.connections} connections, "
          f"{'server on CPU 0, client on CPU 1' if args.pin else 'unpinned'}; topic {args.topic}")
    rounds = []
    for number in range(1, args.rounds + 1):  # bare and full alternate: drift on a shared machine hits both
        results = {kind: measure(kind, args, bodies, args.topic) for kind in ("bare", "full")}
        rounds.append(summarise(results))
        if args.rounds > 1:
            print(f"round {number}:")
        for kind, r in results.items():
            print(f"  {kind:5} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                  f"server CPU {r['server_cpu']:.0%} = {r['server_cpu'] / r['rps'] * 1e6:.0f} µs/request  "
                  f"client CPU {r['client_cpu']:.0%}  {r['statuses']}")
        summary = rounds[-1]
        print(f"  server CPU per request, bare/full: {summary['cpu_ratio']:.2f} "
              "(the ratio one saturated core would give; robust to a loaded machine)")
        print(f"  ratio full/bare {summary['ratio']:.2f} (target >= 0.5); "
              f"full p99 {summary['full_p99_ms']:.1f} ms (target < 20 ms)")
    if len(rounds) > 1:
        print(f"over {len(rounds)} rounds, median [min–max]:")
        for name, unit in (("ratio", ""), ("cpu_ratio", ""), ("full_p50_ms", " ms"), ("full_p99_ms", " ms")):
            values = sorted(r[name] for r in rounds)
            print(f"  {name:12} {statistics.median(values):7.2f}{unit}  [{values[0]:.2f}–{values[-1]:.2f}]")


def summarise(results: dict) -> dict:
    bare, full = results["bare"], results["full"]
    return {"ratio": full["rps"] / bare["rps"],
            "cpu_ratio": (bare["server_cpu"] / bare["rps"]) / (full["server_cpu"] / full["rps"]),
            "full_p50_ms": full["p50_ms"], "full_p99_ms": full["p99_ms"]}

if __name__ == "__main__":
    main()
