"""(a) Ingest: the full service against a bare aiohttp handler that answers 202, at 64 connections.

The load itself is the ingest developer's ``bench/ingest_load.py`` (issue 3); this module only runs it as part of
``python -m bench`` and turns its figures into a table row. It is skipped while that file does not exist.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench.common import BenchmarkSkipped, Result

LOAD = Path(__file__).with_name("ingest_load.py")


async def ingest_benchmark(workdir: Path, rounds: int, quick: bool) -> list[Result]:
    if not LOAD.exists() or importlib.util.find_spec("bench.ingest_load") is None:
        raise BenchmarkSkipped("bench/ingest_load.py (the ingest load check, issue 3) is not there yet")
    raise BenchmarkSkipped("bench/ingest_load.py exists but has no entry point this harness knows yet")
