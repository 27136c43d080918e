"""``onduty kafka``: run the local single-node Kafka broker in the foreground."""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from onduty.env import env_int, env_str


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kafka", help="run a local single-node Kafka broker until Ctrl-C")
    parser.add_argument("--port", type=int, default=None,
                        help="client port on 127.0.0.1 (ONDUTY_KAFKA_PORT, default 9092)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="broker data directory, kept across runs (ONDUTY_KAFKA_DATA_DIR; default: a fresh temporary one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onduty.kafka_broker import BrokerConfig, BrokerError, LocalKafkaBroker

    port = args.port if args.port is not None else env_int("KAFKA_PORT", 9092)  # read here, not at parser build
    data_dir = args.data_dir or env_str("KAFKA_DATA_DIR", "") or Path(tempfile.mkdtemp(prefix="onduty-kafka-"))
    broker = LocalKafkaBroker(BrokerConfig(data_dir=Path(data_dir), port=port))
    bootstrap = broker.start()
    print(f"Kafka ready: bootstrap {bootstrap} (data {data_dir}, log {broker.log_file})", flush=True)
    exited = wait_for_termination(broker)
    if exited is not None:  # a crash, the OOM killer, a kill: say so and fail, never wait on a dead broker
        broker.stop()
        raise BrokerError(exited)
    print("stopping Kafka…", flush=True)
    broker.stop()
    return 0


def wait_for_termination(broker, poll_s: float = 0.5) -> str | None:
    """Block until SIGINT or SIGTERM (then None), or until ``broker`` exits on its own (then its
    ``exit_report``)."""
    received = []
    before = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
              for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received:
            exited = broker.exit_report()
            if exited is not None:
                return exited
            time.sleep(poll_s)  # a signal's handler runs meanwhile
        return None
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
