"""``onduty up``: the whole stack on this machine without Docker, in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from onduty.env import env_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up", help="run the whole stack locally: Kafka, topics, ingest, N processor workers, until Ctrl-C",
        description="Starts the project's own Kafka broker (data kept in VAR_DIR/kafka), creates the topics, then "
                    "`onduty ingest` and N `onduty processor` workers, each with its own port and data dir. "
                    "Without ONDUTY_WEBHOOK_SECRETS a development secret is generated once and printed. "
                    "Ctrl-C or SIGTERM stops everything in reverse order.",
    )
    parser.add_argument("--workers", type=int, default=2, help="processor workers (default 2)")
    parser.add_argument("--var-dir", type=Path, default=Path("var"),
                        help="data and logs of every service (default ./var, kept across runs)")
    parser.add_argument("--kafka-port", type=int, default=None,
                        help="port of the local broker (ONDUTY_KAFKA_PORT, default 9092)")
    parser.add_argument("--bootstrap", default=None,
                        help="use this existing Kafka instead of starting the local broker")
    parser.add_argument("--ingest-port", type=int, default=None,
                        help="webhook port (ONDUTY_INGEST_PORT, default 8080)")
    parser.add_argument("--web-port", type=int, default=None,
                        help="query API port of the first worker; the next ones count up (default 6066)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onduty.stack import LocalStack, StackConfig, StackError

    if args.workers < 1:
        print("onduty up: --workers must be at least 1", file=sys.stderr)
        return 2
    # defaults from the environment are read here, not when the parser is built: a bad value of a variable only
    # `up` uses must not break every other command
    config = StackConfig(
        var_dir=args.var_dir, bootstrap=args.bootstrap, workers=args.workers,
        kafka_port=args.kafka_port if args.kafka_port is not None else env_int("KAFKA_PORT", 9092),
        ingest_port=args.ingest_port if args.ingest_port is not None else env_int("INGEST_PORT", 8080),
        first_web_port=args.web_port if args.web_port is not None else env_int("PROCESSOR_WEB_PORT", 6066))
    # while starting, Ctrl-C / SIGTERM interrupt the start; once up, they ask the supervision loop to stop
    signal.signal(signal.SIGTERM, _interrupt)
    stop: list[int] = []
    stack = LocalStack(config)
    try:
        stack.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.append(signum))
        print(stack.banner(), flush=True)
        dead = stack.wait(lambda: bool(stop))
        if dead is not None:
            print(f"\n{dead.name} {dead.exit_reason()}; stopping the stack. "
                  f"Last lines of {dead.log_file}:\n{dead.log_tail()}", file=sys.stderr, flush=True)
            return 1
        print("\nstopping…", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted while starting; stopping…", flush=True)
        return 130
    except StackError as exc:
        print(f"onduty up: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("stopped: nothing left running.", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
