"""Stopping a child process the way every part of the local stack does."""

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
