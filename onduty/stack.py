"""The local stack without Docker: the project's broker, topic creation, the ingest service, N processor workers.

Every service runs as the same ``onduty …`` command the Docker image runs (``SERVICE_COMMANDS``; a test checks the
Dockerfile and compose file against it), in its own process with its own port and data directory under ``var/``.
``LocalStack.stop()`` stops them in reverse order of start; a child that dies stops the stack and is named.
"""

from __future__ import annotations

import ctypes
import http.client
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from onduty.processes import exit_reason, stop_process

if TYPE_CHECKING:
    from onduty.kafka_broker import LocalKafkaBroker

log = logging.getLogger(__name__)

SERVICE_COMMANDS: dict[str, list[str]] = {
    "topics": ["topics"],
    "ingest": ["ingest"],
    "processor": ["processor"],
}
"""The ``onduty`` subcommand of each service, without per-instance flags: what the Docker image runs too."""

WEBHOOK_PATH = "/webhooks/dialpad/agent-status"
DEV_SECRET_FILE = "dev-webhook-secret"


class StackError(RuntimeError):
    """The stack could not start or a service failed; the message names the service and says why."""


@dataclass
class StackConfig:
    """Where the local stack listens and keeps its data."""

    var_dir: Path = Path("var")
    kafka_port: int = 9092
    bootstrap: str | None = None
    """An existing Kafka to use instead of starting the project's own broker."""
    ingest_port: int = 8080
    workers: int = 2
    first_web_port: int = 6066
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    start_timeout_s: float = 120.0

    def web_port(self, worker: int) -> int:
        return self.first_web_port + worker


def onduty_argv(*args: str) -> list[str]:
    """``onduty <args>`` run with this interpreter, whether or not the console script is on PATH."""
    return [sys.executable, "-m", "onduty.cli", *args]


def missing_commands() -> list[str]:
    """The service commands this checkout's ``onduty`` does not have."""
    from onduty.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return [argv[0] for argv in SERVICE_COMMANDS.values() if argv[0] not in subparsers.choices]


def webhook_secrets(config: StackConfig) -> tuple[str, bool]:
    """The secret(s) for ``ONDUTY_WEBHOOK_SECRETS`` and whether a dev secret was generated for this var dir.

    Without a configured secret the stack does not run unsigned: it generates a development secret once,
    keeps it in ``var/dev-webhook-secret`` (so tokens stay valid across restarts) and prints it.
    """
    configured = config.environ.get("ONDUTY_WEBHOOK_SECRETS", "").strip()
    if configured:
        return configured, False
    path = config.var_dir / DEV_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip(), True


def sample_token(secret: str, agent_id: str = "5728255400000000", call_center_id: str = "5883344555555555",
                 status: str = "available", date_ms: int | None = None) -> str:
    """A signed agent status event as Dialpad sends it (HS256 JWT), for the curl example."""
    import jwt

    date_ms = date_ms if date_ms is not None else int(time.time() * 1000)
    claims = {
        "call_center_ids": [call_center_id],
        "target": {"id": agent_id, "type": "user", "name": "sample agent", "email": "[email protected]"},
        "on_duty_status": status,
        "availability_status": "open",
        "on_duty_status_reason": "",
        "date": date_ms,
        "event_timestamp": date_ms,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _die_with_parent() -> None:
    """In the child: get SIGTERM if ``onduty up`` itself is killed, so no service outlives it (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


SERVICE_STOP_S = 30.0
"""How long a service gets to stop after SIGTERM before SIGKILL."""
BROKER_GONE_STOP_S = 5.0
"""The same once the stack's own broker has died (nothing left to flush or commit to)."""


@dataclass
class Service:
    """One child process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches `onduty up` only; it stops the children in order
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        log.info("started %s (pid %s): %s", self.name, self.process.pid, " ".join(self.argv[3:]))

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def exit_reason(self) -> str:
        return exit_reason(self.exit_code())

    def stop(self, timeout_s: float = SERVICE_STOP_S) -> None:
        stop_process(self.process, self.name, timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no output)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


class LocalStack:
    """Start with ``start()``, supervise with ``wait()``, always ``stop()`` (also a context manager)."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker = None
        self.bootstrap = config.bootstrap or f"127.0.0.1:{config.kafka_port}"
        self.services: list[Service] = []
        self.secret, self.generated_secret = "", False

    # -- start ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        missing = missing_commands()
        if missing:
            raise StackError(
                "this checkout's `onduty` has no " + ", ".join(f"`onduty {m}`" for m in missing)
                + " command yet; `onduty up` runs the ingest service and the processor workers as those commands"
            )
        self._check_ports_free()
        self.secret, self.generated_secret = webhook_secrets(self.config)
        self.config.var_dir.mkdir(parents=True, exist_ok=True)
        if self.config.bootstrap is None:
            self._start_broker()
        self.run_topics()
        self.start_ingest()
        for worker in range(self.config.workers):
            self.start_processor(worker)
        for service in self.services:
            self.wait_ready(service)
        self.wait_group_stable()

    def _check_ports_free(self) -> None:
        ports = {"ingest": self.config.ingest_port}
        ports.update({f"processor-{i + 1}": self.config.web_port(i) for i in range(self.config.workers)})
        if self.config.bootstrap is None:
            ports["kafka"] = self.config.kafka_port
        busy = [f"{name} port {port}" for name, port in ports.items() if _port_open(port)]
        if busy:
            raise StackError("already in use: " + ", ".join(busy) + " (is another `onduty up` running?)")

    def _start_broker(self) -> None:
        from onduty.kafka_broker import BrokerConfig, LocalKafkaBroker

        self.broker = LocalKafkaBroker(BrokerConfig(self.config.var_dir / "kafka", port=self.config.kafka_port))
        log.info("starting Kafka on %s (data %s)", self.bootstrap, self.config.var_dir / "kafka")
        self.broker.start()

    def service_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.config.environ)
        env.update({"ONDUTY_KAFKA_BOOTSTRAP": self.bootstrap, "ONDUTY_WEBHOOK_SECRETS": self.secret,
                    "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def run_topics(self) -> None:
        logs = self.config.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(onduty_argv(*SERVICE_COMMANDS["topics"]), env=self.service_env(),
                                capture_output=True, text=True, timeout=self.config.start_timeout_s)
        (logs / "topics.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StackError(f"`onduty topics` failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")

    def start_ingest(self) -> Service:
        port = self.config.ingest_port
        service = Service(
            "ingest", onduty_argv(*SERVICE_COMMANDS["ingest"]),
            self.service_env(ONDUTY_INGEST_PORT=str(port),
                             ONDUTY_INGEST_HOST=self.config.environ.get("ONDUTY_INGEST_HOST", "127.0.0.1"),
                             ONDUTY_SPOOL_DIR=str(self.config.var_dir / "ingest-spool")),
            self.config.var_dir / "logs" / "ingest.log", ready_url=f"http://127.0.0.1:{port}/healthz",
        )
        return self._add(service)

    def start_processor(self, worker: int, name: str | None = None) -> Service:
        """Start worker ``worker`` (0-based): web port ``first_web_port + worker``, data dir ``var/processor-<n>``."""
        port = self.config.web_port(worker)
        name = name or f"processor-{worker + 1}"
        service = Service(name, self.processor_argv(worker), self.service_env(ONDUTY_PROCESSOR_WEB_HOST="127.0.0.1"),
                          self.config.var_dir / "logs" / f"{name}.log", ready_url=f"http://127.0.0.1:{port}/")
        return self._add(service)

    def processor_argv(self, worker: int) -> list[str]:
        return onduty_argv(*SERVICE_COMMANDS["processor"], "--web-port", str(self.config.web_port(worker)),
                           "--data-dir", str(self.config.var_dir / f"processor-{worker + 1}"))

    def _add(self, service: Service) -> Service:
        service.start()
        self.services.append(service)
        return service

    def wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while not _http_answers(service.ready_url):
            if service.exit_code() is not None:
                raise StackError(f"{service.name} {service.exit_reason()} during start-up; "
                                 f"last lines of {service.log_file}:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"{service.name} did not answer {service.ready_url} within "
                                 f"{self.config.start_timeout_s:.0f}s; last lines of {service.log_file}:\n"
                                 f"{service.log_tail()}")
            time.sleep(0.2)
        log.info("%s ready at %s", service.name, service.ready_url.rsplit("/", 1)[0])

    @property
    def app_id(self) -> str:
        return self.config.environ.get("ONDUTY_PROCESSOR_APP_ID", "onduty-processors")

    def wait_group_stable(self) -> None:
        """Wait until every running worker is a member of the stable consumer group: then each partition has an
        owner, and an event posted now shows in the query API at once rather than after a rebalance."""
        import asyncio

        workers = sum(1 for s in self.services if s.name.startswith("processor") and s.exit_code() is None)
        deadline = time.monotonic() + self.config.start_timeout_s
        while True:
            state, members = asyncio.run(_group_state(self.bootstrap, self.app_id))
            if state == "Stable" and members == workers:
                log.info("%d processor worker(s) share the partitions (consumer group %s)", workers, self.app_id)
                return
            dead = self.dead_service()
            if dead is not None:
                raise StackError(f"{dead.name} {dead.exit_reason()} while joining the consumer group; last lines "
                                 f"of {dead.log_file}:\n{dead.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"consumer group {self.app_id} not stable with {workers} members within "
                                 f"{self.config.start_timeout_s:.0f}s (state {state}, {members} members)")
            time.sleep(0.5)

    # -- run and stop --------------------------------------------------------------------------------------

    def dead_service(self) -> Service | LocalKafkaBroker | None:
        """The first service, or the broker the stack started, that exited on its own."""
        running = [*self.services, *([self.broker] if self.broker is not None else [])]
        return next((s for s in running if s.exit_code() is not None), None)

    def wait(self, stop_requested: Callable[[], bool]) -> Service | LocalKafkaBroker | None:
        """Block until ``stop_requested()`` or a service (or the broker) exits; return the one that exited, if any."""
        while not stop_requested():
            dead = self.dead_service()
            if dead is not None:
                return dead
            time.sleep(0.2)
        return None

    def stop_service(self, service: Service) -> None:
        service.stop()
        if service in self.services:
            self.services.remove(service)

    def stop(self) -> None:
        """Stop every service in reverse order of start, then the broker. When the broker the stack started has
        died, each service gets a few seconds only: the workers would spend their 30 s trying to commit to it."""
        broker_gone = self.broker is not None and self.broker.exit_code() is not None
        timeout_s = BROKER_GONE_STOP_S if broker_gone else SERVICE_STOP_S
        for service in reversed(self.services):
            if service.exit_code() is None:
                log.info("stopping %s%s", service.name,
                         f" (Kafka is gone: {timeout_s:.0f} s at most)" if broker_gone else "")
            service.stop(timeout_s)
        self.services.clear()
        if self.broker is not None:
            log.info("stopping Kafka")
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> "LocalStack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what to tell the user -----------------------------------------------------------------------------

    def banner(self) -> str:
        ingest = f"http://127.0.0.1:{self.config.ingest_port}"
        first_worker = f"http://127.0.0.1:{self.config.first_web_port}"
        workers = ", ".join(f"http://127.0.0.1:{self.config.web_port(i)}" for i in range(self.config.workers))
        token = sample_token(self.secret.split(",")[0].strip())
        tail_bootstrap = "" if self.bootstrap == "127.0.0.1:9092" else f" --bootstrap {self.bootstrap}"
        secret_line = (
            f"  webhook secret: {self.secret}\n"
            f"                  generated for development and kept in {self.config.var_dir / DEV_SECRET_FILE};\n"
            f"                  set ONDUTY_WEBHOOK_SECRETS to your Dialpad webhook's secret instead\n"
            if self.generated_secret else "  webhook secret: from ONDUTY_WEBHOOK_SECRETS\n"
        )
        return (
            "\nonduty is up.\n"
            f"  Kafka:          {self.bootstrap}" + (f" (data {self.config.var_dir / 'kafka'})" if self.broker else "") + "\n"
            f"  webhooks:       POST {ingest}{WEBHOOK_PATH}  (health {ingest}/readyz, metrics {ingest}/metrics)\n"
            + secret_line +
            f"  query API:      {workers} (any worker answers any id)\n"
            f"  logs:           {self.config.var_dir / 'logs'}/\n\n"
            "Send a signed sample event (an agent becomes available in call center 5883344555555555):\n"
            f"  curl -i -X POST {ingest}{WEBHOOK_PATH} --data-binary '{token}'\n"
            "Then:\n"
            f"  curl {first_worker}/callcenters/5883344555555555\n"
            f"  curl {first_worker}/agents/5728255400000000\n"
            f"  {_onduty_command()} tail onduty.callcenter-agents.v1 --from-beginning{tail_bootstrap}\n\n"
            "Ctrl-C stops everything.\n"
        )


def _onduty_command() -> str:
    """How the user can type ``onduty``: plain when it is on PATH, else the virtual environment's script."""
    import shutil

    script = Path(sys.executable).parent / "onduty"
    if shutil.which("onduty") == str(script) or not script.exists():
        return "onduty"
    return os.path.relpath(script) if not os.path.relpath(script).startswith("..") else str(script)


async def _group_state(bootstrap: str, group: str) -> tuple[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (description,) = response.to_object()["groups"]
        return description["state"], len(description["members"])
    except Exception as exc:  # coordinator not there yet: not stable yet
        log.debug("describing group %s: %s", group, exc)
        return "Unknown", 0
    finally:
        await admin.close()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_answers(url: str | None) -> bool:
    """True when something answers HTTP at ``url`` (any status: a 404 still proves the server is up)."""
    if url is None:
        return True
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError, http.client.HTTPException):
        # HTTPException: e.g. a port in the ephemeral range connected to itself before the server listened
        return False
