"""What every benchmark shares: results with median and spread, the machine, a quiet broker, child processes.

Benchmarks only ever talk to loopback addresses, and every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ONDUTY = [sys.executable, "-m", "onduty.cli"]
SOURCE = {"dir": ROOT}
"""Where the services under test (``onduty ingest``, ``onduty processor``) run from: the working tree, or a
committed revision exported with ``--rev`` (several people edit the working tree at once)."""


def source_dir() -> Path:
    return SOURCE["dir"]


def use_revision(rev: str, into: Path) -> str:
    """Run the services from ``git archive <rev>`` (read-only for the repository); return the commit."""
    into.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    SOURCE["dir"] = into
    return commit


def source_env() -> dict[str, str]:
    return {"PYTHONPATH": str(source_dir())}


class BenchmarkSkipped(Exception):
    """A benchmark cannot run here yet (a component is missing); the message says what."""


@dataclass
class Result:
    """One benchmark's figures: the candidate and its ceiling, one value per round."""

    name: str
    metric: str
    unit: str
    candidate_label: str
    ceiling_label: str
    target: str = ""
    candidate: list[float] = field(default_factory=list)
    ceiling: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    failure: str | None = None
    """The candidate failed (the ceiling's figures stay); the first line of what went wrong."""

    @property
    def ratio(self) -> float | None:
        if not self.candidate or not self.ceiling or not statistics.median(self.ceiling):
            return None
        return statistics.median(self.candidate) / statistics.median(self.ceiling)


def summarize(values: Sequence[float]) -> str:
    """``median (min–max, n)``: the spread is the whole range over the rounds."""
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{_fmt(med)} (1 round)"
    return f"{_fmt(med)} ({_fmt(min(values))}–{_fmt(max(values))}, {len(values)} rounds)"


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "∞ (lost)"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def machine() -> dict[str, str]:
    """Where the numbers were measured."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average at start": load,
    }


def table(results: Iterable[Result]) -> str:
    """A markdown table: one row per benchmark."""
    lines = [
        "| benchmark | metric | candidate | ceiling | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | {r.metric} | not run: {r.skipped} | | | {r.target} |")
            continue
        ratio = f"{r.ratio:.3g}×" if r.ratio is not None and not r.failure else "—"
        candidate = f"failed: {r.failure}" if r.failure else summarize(r.candidate)
        lines.append(
            f"| {r.name} | {r.metric} ({r.unit}) | {r.candidate_label}: {candidate} | "
            f"{r.ceiling_label}: {summarize(r.ceiling)} | {ratio} | {r.target} |"
        )
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(label: str) -> str:
    return f"bench.{label}.{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def kafka(bootstrap: str | None, workdir: Path) -> Iterator[str]:
    """A broker for the run: the given one, or a quiet local broker of our own on a free port."""
    if bootstrap:
        yield bootstrap
        return
    from onduty.kafka_broker import BrokerConfig, LocalKafkaBroker

    broker = LocalKafkaBroker(BrokerConfig(data_dir=workdir / "kafka", port=free_port()))
    address = broker.start()
    try:
        yield address
    finally:
        broker.stop()


def onduty_has_command(name: str) -> bool:
    """Whether ``onduty <name>`` exists in this working tree (components land while benchmarks are written)."""
    result = subprocess.run([*ONDUTY, name, "--help"], cwd=source_dir(), env={**os.environ, **source_env()},
                            capture_output=True, text=True, timeout=60)
    return result.returncode == 0


_CHILDREN: list["Child"] = []


def stop_children() -> None:
    """Stop every child still running (at exit, whatever happened)."""
    for child in list(_CHILDREN):
        child.stop(timeout_s=10)


class Child:
    """A child process of ours, in its own process group, stopped by its id (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.port: int | None = None
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args, cwd=source_dir(), env={**os.environ, **source_env(), **env}, stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _CHILDREN.append(self)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        if self in _CHILDREN:
            _CHILDREN.remove(self)

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) of the process so far, from /proc (None where there is no /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def crash(self) -> str | None:
        """The first line where this worker reports that a stage or Faust agent crashed."""
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "Crashed reason=" in line:
                    agent = line.split("Agent*:", 1)[1].split("]:", 1)[0].strip() if "Agent*:" in line else "?"
                    return f"agent {agent} crashed: {line.split('Crashed reason=', 1)[1].strip()}"
        return None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def processor_env(bootstrap: str, raw_topic: str, app_id: str) -> dict[str, str]:
    """A worker replaying history: wall-clock time must never advance its watermarks."""
    return {
        "ONDUTY_KAFKA_BOOTSTRAP": bootstrap,
        "ONDUTY_RAW_TOPIC": raw_topic,
        "ONDUTY_PROCESSOR_APP_ID": app_id,
        "ONDUTY_IDLE_ADVANCE": "false",
    }


def start_processor(bootstrap: str, raw_topic: str, app_id: str, workdir: Path, *, live: bool = False) -> Child:
    port = free_port()
    data_dir = workdir / f"processor-{app_id}"
    env = processor_env(bootstrap, raw_topic, app_id)
    if live:
        env["ONDUTY_IDLE_ADVANCE"] = "true"
    child = Child([*ONDUTY, "--log-level", "WARNING", "processor", "--web-port", str(port),
                   "--data-dir", str(data_dir)], env, workdir / f"processor-{app_id}.log")
    child.port = port
    return child


def wait_http_answers(url: str, deadline_s: float, child: Child | None = None) -> None:
    """Poll ``url`` until it answers at all (any HTTP status)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"process exited early:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {deadline_s:.0f}s")


def wait_http_ok(url: str, deadline_s: float, child: Child | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail with the child's log when it dies or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"process exited early:\n{child.tail()}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 2xx within {deadline_s:.0f}s" +
                       (f":\n{child.tail()}" if child else ""))


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def end_offsets_total(bootstrap: str, topic: str) -> int:
    """Sum of the end offsets of a topic's partitions (0 when it does not exist yet)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await consumer._client.fetch_all_metadata()  # noqa: SLF001 (no public call for this)
        ids = partitions.partitions_for_topic(topic) or set()
        if not ids:
            return 0
        offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in ids])
        return sum(offsets.values())
    finally:
        await consumer.stop()


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="onduty-bench-"))


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_async(coro):
    return asyncio.run(coro)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).replace("|", "/")[:300]
