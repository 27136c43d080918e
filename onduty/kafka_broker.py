"""A real single-node Apache Kafka broker (KRaft, combined mode) started from Maven Central jars.

Used by ``onduty kafka``, by the local stack and by the test harness, so that all three run the
same broker the same way on a machine without Docker. The jars are resolved once with Maven into
the user's cache directory (``ONDUTY_CACHE_DIR``, default ``~/.cache/onduty``); later starts are
offline.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from onduty.processes import exit_reason, stop_process

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # log4j2 2.24.x matches Kafka 4.0/4.1
SCALA_BINARY = "2.13"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>onduty</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


class BrokerError(RuntimeError):
    """The local broker could not be set up or did not come up; the message says why."""


def cache_dir() -> Path:
    """Where downloaded jars live, outside the repository."""
    configured = os.environ.get("ONDUTY_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onduty"


def ensure_broker_jars(cache: Path | None = None) -> Path:
    """Return the folder holding the broker's classpath, resolving it with Maven the first time."""
    libs = (cache or cache_dir()) / f"kafka_{SCALA_BINARY}-{KAFKA_VERSION}-log4j-{LOG4J_VERSION}" / "libs"
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (`mvn`) is needed once to fetch the Kafka broker jars; install it first")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=libs.parent) as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_POM.format(scala=SCALA_BINARY, kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
        staged = Path(work) / "libs"
        log.info("fetching Kafka %s broker jars with Maven into %s", KAFKA_VERSION, libs)
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={staged}", "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"Maven could not fetch the Kafka jars:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
        (staged / ".complete").write_text(f"kafka {KAFKA_VERSION}, log4j {LOG4J_VERSION}\n")
        if libs.exists():
            shutil.rmtree(libs)
        staged.rename(libs)
    return libs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (what StorageTool random-uuid does).

    Like Kafka's ``Uuid.randomUuid``, never one that starts with ``-``: ``kafka-storage format -t -xyz…`` takes it
    for an option and fails (one id in 64 would).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


_KAFKA_JVM_PERFORMANCE_OPTS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                               "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                               "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")
"""What Kafka's ``kafka-run-class.sh`` gives a broker by default (``KAFKA_JVM_PERFORMANCE_OPTS``)."""


@dataclass
class BrokerConfig:
    """Where and how the local broker listens and keeps its data."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 0
    """0 picks a free port."""
    heap: str = "1g"
    """Kafka's own default (``kafka-server-start.sh``), as the initial heap too: a smaller young generation was
    collected every 1-2 s under load, each pause (about 9 ms) holding every acknowledgement in flight."""
    partitions: int = 8
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def server_properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft-logs"),
            "num.partitions": str(self.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "auto.create.topics.enable": "true",
        }
        props.update(self.extra)
        return "".join(f"{key}={value}\n" for key, value in props.items())


_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


class LocalKafkaBroker:
    """One broker process. ``start()`` returns once the client port accepts connections."""

    name = "Kafka"
    """What ``onduty up`` calls it when it dies (as it names its services)."""

    def __init__(self, config: BrokerConfig, libs: Path | None = None) -> None:
        if config.controller_port == 0:
            config.controller_port = free_port()
        self.config = config
        self.libs = libs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """The broker's own log, where start-up failures are explained."""
        return self.config.data_dir / "broker.log"

    def _java(self, main_class: str, *args: str) -> list[str]:
        """The command that runs ``main_class``: the broker with its heap reserved from the start, a tool (the
        storage format) with the 256 MB that ``kafka-run-class.sh`` gives Kafka's tools."""
        assert self.libs is not None
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ (`java`) is needed to run the Kafka broker; install it first")
        heap = [f"-Xmx{self.config.heap}", f"-Xms{self.config.heap}"] if main_class == "kafka.Kafka" else ["-Xmx256M"]
        return [
            java, *heap, *_KAFKA_JVM_PERFORMANCE_OPTS,
            f"-Dlog4j2.configurationFile={self.config.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.config.data_dir}",
            "-cp", f"{self.libs}/*", main_class, *args,
        ]

    def _prepare(self) -> Path:
        data = self.config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        (data / "log4j2.properties").write_text(_LOG4J2.format(log_file=self.log_file))
        props = data / "server.properties"
        props.write_text(self.config.server_properties())
        if not (data / "kraft-logs" / "meta.properties").exists():
            result = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(props)),
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise BrokerError(f"formatting Kafka storage in {data} failed:\n{result.stdout}{result.stderr}")
        return props

    def start(self, timeout_s: float = 90.0) -> str:
        """Start the broker and wait until it accepts clients; return the bootstrap address."""
        self.libs = self.libs or ensure_broker_jars()
        props = self._prepare()
        if _port_open(self.config.port):
            raise BrokerError(f"port {self.config.port} is already in use; choose another with --port")
        stdout = open(self.config.data_dir / "broker.stdout", "ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(props)), stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stdout.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"Kafka {self.exit_reason()} during start-up:\n{self.log_tail()}")
            if _port_open(self.config.port):
                log.info("Kafka %s ready on %s (logs: %s)", KAFKA_VERSION, self.config.bootstrap, self.log_file)
                return self.config.bootstrap
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Kafka did not open {self.config.bootstrap} within {timeout_s:.0f}s:\n{self.log_tail()}")

    def exit_code(self) -> int | None:
        """None while the broker runs (or was never started); its ``returncode`` once it exited."""
        return None if self.process is None else self.process.poll()

    def exit_reason(self) -> str:
        return exit_reason(self.exit_code())

    def exit_report(self) -> str | None:
        """None while the broker runs (or was never started); once it exited on its own, how, and the end of its
        log."""
        if self.exit_code() is None:
            return None
        return f"Kafka {self.exit_reason()}:\n{self.log_tail()}"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM for a clean shutdown; SIGKILL if it does not finish in time."""
        process, self.process = self.process, None
        stop_process(process, "Kafka", timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in (self.config.data_dir / "broker.stdout", self.log_file):
            if path.exists():
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts) or "(no broker output)"

    def __enter__(self) -> "LocalKafkaBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
