"""Stopping a child process the way every part of the local stack does, and saying how one ended."""

from __future__ import annotations

import logging
import signal
import subprocess

log = logging.getLogger(__name__)


def stop_process(process: subprocess.Popen | None, name: str, timeout_s: float = 30.0) -> None:
    """SIGTERM for a clean shutdown; SIGKILL when it has not finished within ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0fs; killing it", name, timeout_s)
        process.kill()
        process.wait()


def exit_reason(code: int | None) -> str:
    """How a child process ended, from its ``returncode``: "exited with code 1", "was killed by SIGKILL"."""
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
