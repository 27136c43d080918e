"""Real processor workers (``onduty processor``) as subprocesses, for integration and end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from onduty.kafka_broker import free_port


class WorkerProcess:
    """One ``onduty processor`` process with its own web port and data directory."""

    def __init__(self, bootstrap: str, raw_topic: str, app_id: str, data_dir: Path, **env: str) -> None:
        self.web_port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir / "worker.log"
        self.env = {
            **os.environ,
            "ONDUTY_KAFKA_BOOTSTRAP": bootstrap,
            "ONDUTY_RAW_TOPIC": raw_topic,
            "ONDUTY_PROCESSOR_APP_ID": app_id,
            "ONDUTY_IDLE_ADVANCE": "false",
            "ONDUTY_SESSION_TIMEOUT": "10s",
            **env,
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, deadline_s: float = 60.0) -> "WorkerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onduty.cli", "processor", "--web-port", str(self.web_port),
             "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if b"Worker]: Ready" in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {deadline_s}s:\n{self.log_tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self) -> None:
        """Graceful stop (SIGTERM), as an operator would."""
        self._signal(signal.SIGTERM, wait_s=30)

    def kill(self) -> None:
        """Hard crash (SIGKILL): nothing is flushed or committed."""
        self._signal(signal.SIGKILL, wait_s=10)

    def _signal(self, sig: int, wait_s: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_bytes().decode("utf-8", "replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class WorkerPool:
    """Workers of one consumer group on one raw topic, started on demand and stopped at the end of a test."""

    def __init__(self, bootstrap: str, raw_topic: str, app_id: str, base_dir: Path, **env: str) -> None:
        self.bootstrap, self.raw_topic, self.app_id, self.base_dir, self.env = bootstrap, raw_topic, app_id, base_dir, env
        self.started: list[WorkerProcess] = []

    def __call__(self, n: int) -> WorkerProcess:
        """Start worker number ``n`` (its own web port and data directory) and wait until it is ready."""
        worker = WorkerProcess(self.bootstrap, self.raw_topic, self.app_id, self.base_dir / f"worker{n}", **self.env)
        self.started.append(worker.start())
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()
