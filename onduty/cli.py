"""The ``onduty`` command: one subcommand per module in ``onduty.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets ``func``;
modules are imported here, their heavy dependencies only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "onduty.commands.ingest",
    "onduty.commands.kafka",
    "onduty.commands.processor",
    "onduty.commands.schemas",
    "onduty.commands.simulate",
    "onduty.commands.tail",
    "onduty.commands.topics",
    "onduty.commands.up",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onduty", description="Call-center agent status pipeline.")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a setting it cannot use, a Kafka it cannot reach or a broker that cannot start ends it with
    the reason on one line (exit 2)."""
    from onduty import log_repeats
    from onduty.env import SettingsError
    from onduty.kafka_broker import BrokerError
    from onduty.topics_admin import TopicsError

    try:
        parser = build_parser()  # some options take their defaults from ONDUTY_* variables
    except SettingsError as exc:
        print(f"onduty: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_repeats.install()  # the Kafka client's retry lines: one per kind a minute while Kafka is down
    try:
        return int(args.func(args) or 0)
    except (SettingsError, TopicsError, BrokerError) as exc:
        print(f"onduty {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
