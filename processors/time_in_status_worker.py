"""Run one processor worker with the time-in-status stage registered, until ``processors/app.py`` registers it.

``python -m processors.time_in_status_worker [--web-port P] [--data-dir D]`` behaves like ``onduty processor``
(the same ``create_app``, settings and topic checks) and adds the time-in-status stage and views when the app
does not have them yet. Once ``create_app`` calls ``time_in_status_stage.register``, this module only delegates.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path


def build_app(settings):
    from processors import time_in_status_stage, time_in_status_views
    from processors.app import create_app

    app = create_app(settings)
    if not any("time-in-status-agents" in str(name) for name in app.agents):
        stage = time_in_status_stage.register(app, settings)
        time_in_status_views.register(app, stage)
    return app


def main(argv: list[str] | None = None) -> int:
    import faust

    from onduty.commands.processor import ensure_pipeline_topics
    from processors.settings import ProcessorSettings

    parser = argparse.ArgumentParser(prog="python -m processors.time_in_status_worker")
    parser.add_argument("--web-port", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ProcessorSettings.from_env()
    overrides = {"web_port": args.web_port, "data_dir": args.data_dir}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_pipeline_topics(settings)
    worker = faust.Worker(build_app(settings), loglevel="info", quiet=True)
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
