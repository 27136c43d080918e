"""Load check of the ingest service (not a test): the full service against a bare aiohttp handler, same run.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/ingest_load.py [--requests 20000]
        [--connections 64] [--max-seconds 60] [--rounds 1] [--no-pin] [--generator auto|wrk|python]
        [--versus REV] [--paced-share 0.5 | --paced-rate REQ_PER_S]

Each server runs in its own process on 127.0.0.1 (uvloop when installed), pinned to CPU 0, and the load
generator and the local Kafka brokers' threads to CPU 1 when the machine has two: the service has a core to
itself, as the bare handler has. The generator is ``wrk`` (one thread, a Lua script that POSTs
signed tokens, rotating through ``--tokens`` distinct ones) when it is on PATH, else an aiohttp client in this
process; the output says which. Scenarios:

* ``bare``: reads the body and answers 202 (the ceiling);
* ``full``: ``ingest.create_app`` with HS256 verification, schema validation and acknowledged publishing
  to a real Kafka broker (a fresh topic, a temporary spool).

Bounded in count (``--requests``, after a warm-up) and time (``--max-seconds``) per scenario; wrk runs
for a duration instead: a 2 s warm-up, then as long as ``--requests`` take at the warm-up's rate (at least
5 s, at most ``--max-seconds``). Prints requests/s, p50/p99 latency and the ratio full/bare; with
``--rounds N`` the two alternate N times and the median and range of each figure follow (a shared machine
drifts within seconds). Target (issue 3): ratio >= 0.5, p99 < 20 ms at 64 connections. The Python load
generator is slower than wrk: when it saturates its core before the bare server does, the ratio is an upper
bound and the latency partly its own; the CPU share of each process is printed to tell.

``paced`` (each round, unless ``--paced-share 0``): the full service again, offered half the bare handler's
rate of that round (``--paced-share``) in an open loop over the same connections, as webhooks arrive: request
``n`` is due at ``n / rate`` whether or not earlier ones were answered, and its latency counts from when it was
due when the server kept it waiting (wrk2's correction for coordinated omission; ``run_paced_load``, a Python
client in this process, since wrk cannot pace). The closed loop above measures the latency of a saturated
server, which is the connections over the rate (Little's law); this one measures it at the target's rate.
``--paced-rate N`` paces at N requests/s instead (e.g. 300, as webhooks usually arrive: each request then gets
a produce round of its own), and with ``--versus`` also paces that revision at the same rate.

``--versus REV`` adds a scenario to each round: the full service as of the git revision ``REV``
(``git archive``), served right after this tree's, for before/after comparisons of a change. The summary gives
each one's CPU per request and in how many rounds this tree used less (alternating rounds: a drifting machine
moves both), for the closed loop and, with ``--paced-rate``, for the paced load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
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


def generator_of(args: argparse.Namespace) -> str:
    """``wrk`` or ``python``: what ``--generator`` asks for (``auto``: wrk when it is on PATH)."""
    wanted = getattr(args, "generator", "auto")
    if wanted == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if wanted == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--generator wrk: wrk is not on PATH (Debian: apt-get install wrk)")
    return wanted


# wrk: one Lua state per thread. Each thread formats every request once (the tokens from the file named by
# the first script argument) and sends them in rotation, starting at its own offset; statuses are counted
# per thread ("202-spool" when the body says the event went to the spool) and the totals printed as one
# JSON line by done(). Latencies beyond wrk's --timeout are counted as timeouts, not in the percentiles.
WRK_SCRIPT = r"""
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  requests_ = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      table.insert(requests_, wrk.format("POST", args[2], {["Content-Type"] = "application/jwt"}, line))
    end
  end
  position = (id * 7919) % #requests_
  statuses = {}
end

function request()
  position = position + 1
  if position > #requests_ then position = 1 end
  return requests_[position]
end

function response(status, headers, body)
  local outcome = tostring(status)
  if status == 202 and body and string.find(body, "spool", 1, true) then outcome = outcome .. "-spool" end
  statuses[outcome] = (statuses[outcome] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    for outcome, count in pairs(thread:get("statuses")) do
      parts[outcome] = (parts[outcome] or 0) + count
    end
  end
  local statuses = {}
  for outcome, count in pairs(parts) do table.insert(statuses, string.format('"%s": %d', outcome, count)) end
  local e = summary.errors
  io.write(string.format(
    '\nWRK-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(statuses, ", ")))
end
"""


def run_wrk(port: int, tokens_file: str, script_file: str, connections: int, seconds: float) -> dict:
    """One wrk run; its figures, and its CPU share (of one core) over the run."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "-s", script_file, f"http://127.0.0.1:{port}{URL_PATH}", "--", tokens_file, URL_PATH]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    output, errors = process.communicate(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in output.decode().splitlines() if line.startswith("WRK-RESULT ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({process.returncode}): {errors.decode()[-2000:]}{output.decode()[-2000:]}")
    result = json.loads(lines[-1].removeprefix("WRK-RESULT "))
    result["client_cpu"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / elapsed
    return result


def run_wrk_load(server_pid: int, port: int, tokens_file: str, requests: int, connections: int,
                 max_s: float) -> dict:
    """A 2 s warm-up, then a run sized to about ``requests`` at the warm-up's rate (5 s to ``max_s``)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="ingest-load-") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        warmup = run_wrk(port, tokens_file, script.name, connections, 2)
        rate = warmup["requests"] / (warmup["duration_us"] / 1e6)
        seconds = min(max_s, max(5.0, requests / max(rate, 1.0)))
        server = ServerCpu(server_pid)
        result = run_wrk(port, tokens_file, script.name, connections, seconds)
        server_figures = server.since()
    elapsed = result["duration_us"] / 1e6
    statuses = dict(sorted(result["statuses"].items()))
    for name, count in result["errors"].items():
        if count and name != "status":  # non-2xx/3xx statuses are counted above already
            statuses[f"error:{name}"] = count
    return {
        "rps": result["requests"] / elapsed, "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
        "count": result["requests"], "statuses": statuses, "elapsed_s": elapsed,
        "client_cpu": result["client_cpu"], "generator": "wrk", **server_figures,
    }


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
        "elapsed_s": elapsed, "client_cpu": client_cpu, "generator": "python (aiohttp client)",
    }


def paced_requests(port: int, bodies: list[bytes]) -> list[bytes]:
    """Each body as a whole HTTP/1.1 POST to the webhook path, formatted once."""
    head = f"POST {URL_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/jwt\r\n"
    return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


def latency_origin(due: float, sent: float, previous_answered: float) -> float:
    """Where a paced request's latency counts from: its scheduled time when the answer to its connection's
    previous request came after that time (the server was behind; counting from the late send would hide the
    wait, the "coordinated omission" wrk2 corrects for), else the moment it was sent (a sleep that woke late
    is the generator's delay, not the server's)."""
    return due if previous_answered > due else sent


class PacedLoad:
    """The schedule and the figures of ``run_paced_load``; ``clock`` is ``time.perf_counter`` (uvloop's
    ``loop.time()`` counts whole milliseconds)."""

    def __init__(self, requests: list[bytes], rate: float, connections: int, warmup_s: float, seconds: float) -> None:
        self.requests, self.rate, self.connections = requests, rate, connections
        self.warmup_s, self.seconds = warmup_s, seconds
        self.clock = time.perf_counter
        self.start = self.measured_from = self.end = 0.0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.answered_in_window = 0

    def begin(self) -> None:
        """Request 0 is due now (the connections are open)."""
        self.start = self.clock()
        self.measured_from = self.start + self.warmup_s
        self.end = self.measured_from + self.seconds

    def record(self, due: float, sent: float, previous_answered: float, answered: float, head: bytes,
               answer: bytes) -> None:
        self.answered_in_window += self.measured_from <= answered <= self.end
        if due < self.measured_from:
            return
        self.latencies.append(answered - latency_origin(due, sent, previous_answered))
        outcome = f"{head[9:12].decode()}{'-spool' if b'spool' in answer else ''}"
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1


class PacedConnection(asyncio.Protocol):
    """One keep-alive connection of a ``PacedLoad``: the requests numbered ``index``, ``index + connections``, …,
    each sent when due or, when the server is behind, as soon as the previous one was answered."""

    def __init__(self, load: PacedLoad, index: int) -> None:
        self.load = load
        self.number = index - load.connections
        self.due = self.sent = self.answered = 0.0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self) -> None:
        self.answered = self.load.start
        self.send_next()

    def send_next(self) -> None:
        load = self.load
        self.number += load.connections
        self.due = load.start + self.number / load.rate
        if self.due >= load.end:
            self.finished.set_result(None)
            self.transport.close()
            return
        delay = self.due - load.clock()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._send)
        else:
            self._send()

    def _send(self) -> None:
        self.sent = self.load.clock()
        self.transport.write(self.load.requests[self.number % len(self.load.requests)])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        answer_end = head_end + 4 + content_length(self.buffer[:head_end])
        if len(self.buffer) < answer_end:
            return
        head, answer = self.buffer[:head_end], self.buffer[head_end + 4:answer_end]
        self.buffer = self.buffer[answer_end:]
        previous_answered, self.answered = self.answered, self.load.clock()
        self.load.record(self.due, self.sent, previous_answered, self.answered, head, answer)
        self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_exception(ConnectionError(f"the server closed a connection of the paced load ({exc!r})"))


async def run_paced_load(port: int, bodies: list[bytes], rate: float, connections: int, seconds: float,
                         server_pid: int | None = None, warmup_s: float = 2.0) -> dict:
    """Open-loop load at ``rate`` requests/s over ``connections`` keep-alive connections: a ``warmup_s`` warm-up,
    then ``seconds`` measured. Request ``n`` is due at ``n / rate`` and goes on connection ``n % connections``
    (``PacedConnection``); its latency counts from ``latency_origin``, as wrk2 counts. ``rps`` is the answers
    that came within the measured seconds, per second: below ``rate``, the server did not keep up. With
    ``server_pid``, its CPU over those seconds."""
    loop = asyncio.get_running_loop()
    load = PacedLoad(paced_requests(port, bodies), rate, connections, warmup_s, seconds)
    paced = [(await loop.create_connection(lambda i=i: PacedConnection(load, i), "127.0.0.1", port))[1]
             for i in range(connections)]
    load.begin()
    for connection in paced:
        connection.begin()

    async def server_cpu() -> dict[str, float]:
        await asyncio.sleep(load.measured_from - load.clock())
        server = ServerCpu(server_pid)
        await asyncio.sleep(load.end - load.clock())
        return server.since()

    cpu_task = asyncio.ensure_future(server_cpu()) if server_pid is not None else None
    client_before = time.process_time()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.finished for c in paced)), timeout=load.end - load.clock() + 30)
    except asyncio.TimeoutError:
        raise SystemExit(f"paced load at {rate:.0f} req/s: requests still unanswered 30 s after the last was due "
                         "(the server stopped answering, or is far slower than that rate)") from None
    client_cpu = (time.process_time() - client_before) / (load.end - load.start)
    latencies = sorted(load.latencies)
    result = {
        "rps": load.answered_in_window / seconds, "offered_rps": rate, "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "max_ms": latencies[-1] * 1000,
        "count": len(latencies), "statuses": load.statuses, "elapsed_s": seconds, "client_cpu": client_cpu,
        "generator": "python (paced, open loop)",
    }
    if cpu_task is not None:
        result.update(await cpu_task)
    return result


def content_length(head: bytes) -> int:
    """The Content-Length of an HTTP response head (0 when it has none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


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


def start_server(kind: str, args: argparse.Namespace, topic: str, spool_dir: str,
                 source: str | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    source = source or getattr(args, "source", None)  # ``python -m bench --rev``: the services' code from that revision
    # (on the command line: this script's own tree comes first on sys.path, ahead of PYTHONPATH)
    from_source = ["--source", str(source)] if source is not None else []
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--bootstrap",
                                args.bootstrap, "--topic", topic, "--spool-dir", spool_dir, *from_source], cwd=ROOT)
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


def preemptions(pid: int) -> int:
    """How often the process lost its CPU while it could still run (another process took the core)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds the process has used so far: (user, system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def cpu_use(before: tuple[float, float], after: tuple[float, float], wall_s: float) -> tuple[float, float]:
    """Between two ``cpu_split`` readings ``wall_s`` apart: the share of one core the process used, and the
    kernel's share of that."""
    user, system = after[0] - before[0], after[1] - before[1]
    return (user + system) / wall_s, system / (user + system) if user + system > 0 else 0.0


class ServerCpu:
    """A server process's CPU from now until ``since()``: the ``server_cpu``, ``server_system_share`` and
    ``preempted_per_s`` figures of a scenario's result."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.split, self.preempted, self.wall = cpu_split(pid), preemptions(pid), time.perf_counter()

    def since(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        server_cpu, system_share = cpu_use(self.split, cpu_split(self.pid), wall)
        return {"server_cpu": server_cpu, "server_system_share": system_share,
                "preempted_per_s": (preemptions(self.pid) - self.preempted) / wall}


def server_properties(command: list[bytes]) -> list[Path]:
    """The properties files a broker's command line names as arguments: its ``server.properties``, not the
    ``-Dlog4j2.configurationFile=...properties`` option ``onduty kafka`` passes too (read as a path, that
    option raised ``OSError`` and the whole broker was skipped: it was never pinned)."""
    return [Path(arg.decode()) for arg in command if arg.endswith(b".properties") and not arg.startswith(b"-")]


def broker_threads(port: int) -> list[int]:
    """Thread ids of the local Kafka broker (a ``kafka.Kafka`` Java process) that listens on ``port``, as told by
    its ``server.properties`` (the brokers ``onduty kafka`` starts); other brokers on the machine are not ours."""
    threads = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if b"kafka.Kafka" not in command:
                continue
            properties = server_properties(command)
            if any(f"listeners=PLAINTEXT://127.0.0.1:{port}," in path.read_text() for path in properties):
                threads += [int(task.name) for task in (proc / "task").iterdir()]
        except OSError:  # gone meanwhile, or not readable
            continue
    return threads


@contextlib.contextmanager
def brokers_on(cpus: set[int], bootstrap: str) -> Iterator[int]:
    """Run the threads of the local broker at ``bootstrap`` (its first ``host:port``) on ``cpus`` only (restored
    after); yields how many threads were moved (0: no such local broker, e.g. a remote one).

    With two cores, the service under test has CPU 0 to itself, as the bare handler has: the broker it publishes
    to shares CPU 1 with the load generator instead of taking the service's core.
    """
    moved = {}
    for tid in broker_threads(int(bootstrap.split(",")[0].rsplit(":", 1)[1])):
        with contextlib.suppress(OSError):
            moved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    try:
        yield len(moved)
    finally:
        for tid, before in moved.items():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, before)


def measure(kind: str, args: argparse.Namespace, bodies: list[bytes], topic: str, source: str | None = None,
            rate: float | None = None) -> dict:
    """One scenario: start its server (from ``source`` when given), load it with the generator ``args`` name
    (see ``generator_of``) as fast as it answers, or with ``rate``: at that many requests/s (``run_paced_load``)."""
    with brokers_on({1}, args.bootstrap) if args.pin else contextlib.nullcontext(0):
        return _measure(kind, args, bodies, topic, source, rate)


def _measure(kind: str, args: argparse.Namespace, bodies: list[bytes], topic: str, source: str | None,
             rate: float | None) -> dict:
    generator = generator_of(args)
    with tempfile.TemporaryDirectory(prefix="onduty-bench-spool-") as spool_dir:
        process, port = start_server(kind, args, topic, spool_dir, source)
        try:
            if rate is not None:
                seconds = min(args.max_seconds, max(5.0, args.requests / rate))
                result = new_loop().run_until_complete(
                    run_paced_load(port, bodies, rate, args.connections, seconds, server_pid=process.pid))
            elif generator == "wrk":
                tokens_file = Path(spool_dir).parent / f"{Path(spool_dir).name}.tokens"
                tokens_file.write_bytes(b"\n".join(bodies) + b"\n")
                try:
                    result = run_wrk_load(process.pid, port, str(tokens_file), args.requests, args.connections,
                                          args.max_seconds)
                finally:
                    tokens_file.unlink()
            else:
                server = ServerCpu(process.pid)
                result = new_loop().run_until_complete(
                    run_load(port, bodies, args.requests, args.connections, args.max_seconds))
                result.update(server.since())
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
    parser.add_argument("--source", help="with --serve: import the service from this source tree")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1, help="alternate bare and full this many times")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator: wrk, the Python aiohttp client, or wrk when it is on PATH (auto)")
    parser.add_argument("--tokens", type=int, default=20_000, help="distinct signed events to rotate through")
    parser.add_argument("--versus", metavar="REV", help="also serve the full service as of this git revision in "
                        "each round, for a before/after comparison")
    parser.add_argument("--paced-share", type=float, default=0.5, metavar="SHARE",
                        help="each round also offers the full service this share of the round's bare rate, paced "
                        "(open loop, same connections), for p99 at that rate (default 0.5, the target's; 0: not)")
    parser.add_argument("--paced-rate", type=float, metavar="REQ_PER_S",
                        help="pace at this fixed rate instead of a share of the bare rate (e.g. 300: the rates "
                        "webhooks usually arrive at); with --versus, that revision is paced too")
    args = parser.parse_args()
    if args.paced_rate is not None and args.paced_rate <= 0:
        parser.error(f"--paced-rate must be above 0 requests/s, not {args.paced_rate:g}")
    if args.serve:
        if args.source:
            sys.path.insert(0, args.source)
        serve(args.serve, args.port, args.bootstrap, args.topic, args.spool_dir)
        return
    args.pin = args.pin and hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2
    if args.pin:
        os.sched_setaffinity(0, {1})
    generator = generator_of(args)
    bodies = tokens(args.tokens)
    new_loop().run_until_complete(create_topic(args.bootstrap, args.topic))
    amount = (f"{args.requests} requests" if generator == "python" else
              f"a 2 s warm-up, then about {args.requests} requests (5 to {args.max_seconds:.0f} s)")
    print(f"load generator: {'wrk (one thread, Lua script)' if generator == 'wrk' else 'Python aiohttp client'}; "
          f"{amount} per scenario, {args.connections} connections, {len(bodies)} distinct signed events, "
          f"{'server on CPU 0, generator and Kafka broker on CPU 1' if args.pin else 'unpinned'}; topic {args.topic}")
    versus = None
    if args.versus:
        from bench.common import use_revision

        versus_dir = tempfile.mkdtemp(prefix="onduty-bench-versus-")
        versus = (f"full@{use_revision(args.versus, Path(versus_dir))}", versus_dir)
        print(f"each round also serves {versus[0]} (from {versus_dir}) right after this tree's full service")
    rounds = []
    for number in range(1, args.rounds + 1):  # bare and full alternate: drift on a shared machine hits both
        results = {kind: measure(kind, args, bodies, args.topic) for kind in ("bare", "full")}
        if versus is not None:
            results[versus[0]] = measure("full", args, bodies, args.topic, source=versus[1])
        if args.paced_rate is not None or args.paced_share > 0:
            rate = args.paced_rate or args.paced_share * results["bare"]["rps"]
            results["paced"] = measure("full", args, bodies, args.topic, rate=rate)
            if versus is not None and args.paced_rate is not None:
                results[paced_name(versus[0])] = measure("full", args, bodies, args.topic, source=versus[1],
                                                         rate=rate)
        rounds.append(summarise(results, versus[0] if versus is not None else None))
        if args.rounds > 1:
            print(f"round {number}:")
        for kind, r in results.items():
            print(f"  {kind:5} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                  f"server CPU {r['server_cpu']:.0%} = {r['server_cpu'] / r['rps'] * 1e6:.0f} µs/request "
                  f"({r['server_system_share']:.0%} in the kernel)  "
                  f"preempted {r['preempted_per_s']:.0f}/s  client CPU {r['client_cpu']:.0%}  {r['statuses']}")
        summary = rounds[-1]
        print(f"  server CPU per request, bare/full: {summary['cpu_ratio']:.2f} "
              "(the ratio one saturated core would give; robust to a loaded machine)")
        saturated = [kind for kind, r in results.items() if r["client_cpu"] >= 0.9]
        if saturated:
            print(f"  the load generator used its whole core ({', '.join(saturated)}): those figures are the "
                  "generator's limit, not the server's")
        elif results["full"]["server_cpu"] < 0.9:
            print(f"  the full service used {results['full']['server_cpu']:.0%} of its core: it waited for Kafka's "
                  "acknowledgements, or other processes took CPU 0 "
                  "(see 'preempted')")
        print(f"  ratio full/bare {summary['ratio']:.2f} (target >= 0.5); "
              f"full p99 {summary['full_p99_ms']:.1f} ms (target < 20 ms)")
        if "paced" in results:
            paced = results["paced"]
            offered = f"{paced['offered_rps']:.0f} req/s"
            if args.paced_rate is None:
                offered = f"{args.paced_share:g}x the bare rate ({offered})"
            target = " (target < 20 ms)" if args.paced_rate is None and args.paced_share == 0.5 else ""
            print(f"  paced: the full service offered {offered}, open loop, "
                  f"answered {summary['paced_kept_up']:.1%} of it in time, p99 {paced['p99_ms']:.1f} ms{target}, "
                  f"max {paced['max_ms']:.0f} ms")
        if versus is not None:
            print(f"  CPU per request, this tree/{versus[0]}: {summary['versus_cpu']:.3f}")
            if "versus_paced_cpu" in summary:
                print(f"  paced, CPU per request, this tree/{versus[0]}: {summary['versus_paced_cpu']:.3f}")
    if len(rounds) > 1:
        print(f"over {len(rounds)} rounds, median [min–max]:")
        for name, unit in (("ratio", ""), ("cpu_ratio", ""), ("bare_rps", " req/s"), ("full_rps", " req/s"),
                           ("bare_p50_ms", " ms"), ("bare_p99_ms", " ms"), ("full_p50_ms", " ms"),
                           ("full_p99_ms", " ms"), ("paced_kept_up", ""), ("paced_p99_ms", " ms")):
            if name not in rounds[0]:
                continue
            values = sorted(r[name] for r in rounds)
            print(f"  {name:12} {statistics.median(values):7.2f}{unit}  [{values[0]:.2f}–{values[-1]:.2f}]")
    if versus is not None:
        for name, what in (("versus_cpu", "CPU per request"), ("versus_paced_cpu", "paced, CPU per request")):
            if name not in rounds[0]:
                continue
            values = sorted(r[name] for r in rounds)
            fewer = sum(value < 1 for value in values)
            print(f"{what}, this tree/{versus[0]}: median {statistics.median(values):.3f} "
                  f"[{values[0]:.3f}–{values[-1]:.3f}]; this tree used less in {fewer} of {len(values)} rounds")


def cpu_per_request(result: dict) -> float:
    return result["server_cpu"] / result["rps"]


def paced_name(versus: str) -> str:
    """The name of the paced scenario of the ``--versus`` revision whose closed-loop one is ``versus``
    (``full@abc1234`` -> ``paced@abc1234``)."""
    return "paced@" + versus.removeprefix("full@")


def summarise(results: dict, versus: str | None = None) -> dict:
    """A round's figures; with a ``--versus`` scenario, this tree's CPU per request over its; with a paced one,
    its p99 and the share of the offered rate it answered within the measured seconds."""
    bare, full = results["bare"], results["full"]
    summary = {"ratio": full["rps"] / bare["rps"], "cpu_ratio": cpu_per_request(bare) / cpu_per_request(full),
               "bare_rps": bare["rps"], "full_rps": full["rps"], "bare_p50_ms": bare["p50_ms"],
               "bare_p99_ms": bare["p99_ms"], "full_p50_ms": full["p50_ms"], "full_p99_ms": full["p99_ms"]}
    if versus is not None:
        summary["versus_cpu"] = cpu_per_request(full) / cpu_per_request(results[versus])
        paced_versus = results.get(paced_name(versus))
        if paced_versus is not None:
            summary["versus_paced_cpu"] = cpu_per_request(results["paced"]) / cpu_per_request(paced_versus)
    if "paced" in results:
        summary["paced_kept_up"] = results["paced"]["rps"] / results["paced"]["offered_rps"]
        summary["paced_p99_ms"] = results["paced"]["p99_ms"]
    return summary


if __name__ == "__main__":
    main()
