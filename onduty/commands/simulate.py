"""``onduty simulate``: generate realistic agent status traffic, write it with its expected results, post it."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from pathlib import Path

from onduty.env import SettingsError, env_duration_ms, env_int, env_list, env_str, parse_duration_ms

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/dialpad/agent-status"


def default_url() -> str:
    return f"http://127.0.0.1:{env_int('INGEST_PORT', 8080)}{WEBHOOK_PATH}"


def parse_start_ms(text: str) -> int:
    """``now``, unix milliseconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text == "now":
        return int(time.time() * 1000)
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (e.g. 2026-01-05T08:00Z), unix ms or 'now'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)


def recent_start_ms(duration_ms: int, now_ms: int | None = None) -> int:
    """The default start: a UTC midnight such that the whole span ends by today's midnight.

    Recent on purpose, so that the pipeline treats it like live traffic (idle advance, late horizon against recent
    watermarks); fixed for a whole day, so that a seed gives the same file all day (pass --start to pin it for good).
    """
    day = 86_400_000
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms - now_ms % day - -(-duration_ms // day) * day


def parse_window_sizes_ms(text: str) -> list[int]:
    """``"15m,1h,1d"`` -> their lengths in ms: one or more distinct positive durations."""
    sizes = [parse_duration_ms(item) for item in text.split(",") if item.strip()]
    if not sizes or any(size <= 0 for size in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(f"{text!r} is not a list of distinct positive window sizes (e.g. 15m,1h,1d)")
    return sizes


def _option(parse):
    """An argparse ``type`` from a parser that raises ``ValueError``: the message becomes argparse's error line."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def _positive(number: type):
    """An argparse ``type``: an ``int`` or ``float`` above zero."""
    def parse(text: str):
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value
    parse.__name__ = f"positive {number.__name__}"
    return parse


def _share(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1 (or 0% and 100%)")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="generate agent status traffic: write it (with expected results) and/or post it",
        description="Generate seeded Dialpad agent status traffic. Write it as JSON lines with FILE.expected.json "
                    "(--out), post it as signed webhooks (--post), or post a written file (--replay).",
    )
    traffic = parser.add_argument_group("traffic")
    traffic.add_argument("--agents", type=int, default=50, help="number of agents (default 50)")
    traffic.add_argument("--call-centers", type=int, default=3, help="number of call centers (default 3)")
    traffic.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    traffic.add_argument("--duration", type=_option(parse_duration_ms), default="8h",
                         help="event-time span, e.g. 8h, 1d (default 8h)")
    traffic.add_argument("--start", type=_option(parse_start_ms), default=None,
                         help="event-time start: ISO 8601, unix ms or 'now' (default: the UTC midnight that ends the span by "
                              "today's midnight)")
    traffic.add_argument("--duplicates", type=_share, default=0.02,
                         help="share of events delivered twice, e.g. 0.02 or 2%% (default 0.02)")
    traffic.add_argument("--out-of-order", type=_share, default=0.01,
                         help="share of events delivered after the agent's next event (default 0.01)")
    traffic.add_argument("--close-windows", action="store_true",
                         help="end with each agent's unchanged state at start + duration + grace, so every window "
                              "inside the duration closes")
    traffic.add_argument("--grace", type=_option(parse_duration_ms), default=None,
                         help="watermark grace (ONDUTY_GRACE, default 5m)")
    traffic.add_argument("--partitions", type=_positive(int), default=None,
                         help="raw topic partitions, for the lowest watermark of the expected results "
                              "(ONDUTY_PARTITIONS, default 8)")
    traffic.add_argument("--windows", type=_option(parse_window_sizes_ms), default=None,
                         help="window sizes of the expected totals (ONDUTY_WINDOWS, default 15m,1h,1d)")

    target = parser.add_argument_group("targets")
    target.add_argument("--out", type=Path, help="write JSON lines to FILE and expected results to FILE.expected.json")
    target.add_argument("--no-expected", action="store_true", help="with --out: skip FILE.expected.json")
    target.add_argument("--post", nargs="?", const="", metavar="URL",
                        help="post signed webhooks to URL (default http://127.0.0.1:$ONDUTY_INGEST_PORT" + WEBHOOK_PATH + ")")
    target.add_argument("--replay", type=Path, metavar="FILE", help="post a file written by --out instead of generating")

    target.add_argument("--verify", type=Path, metavar="FILE",
                        help="compare the derived topics in Kafka (ONDUTY_KAFKA_BOOTSTRAP) with FILE.expected.json: "
                             "rosters, agent states, complete windows; on a broker where only this stream was processed")
    target.add_argument("--verify-wait", type=float, default=0.0, metavar="SECONDS",
                        help="with --verify: retry until the topics match or this many seconds have passed")

    posting = parser.add_argument_group("posting")
    posting.add_argument("--secret", default=None, help="HS256 secret (default: first of ONDUTY_WEBHOOK_SECRETS)")
    posting.add_argument("--unsigned", action="store_true", help="post plain JSON (ingest needs ONDUTY_ALLOW_UNSIGNED)")
    posting.add_argument("--rate", type=_positive(float), default=None,
                         help="requests per second (default: as fast as possible)")
    posting.add_argument("--speed", type=_positive(float), default=None,
                         help="keep the event-time pacing, compressed: 3600 replays an hour per second")
    posting.add_argument("--concurrency", type=_positive(int), default=64, help="connections at most (default 64)")
    posting.add_argument("--max-seconds", type=_positive(float), default=None,
                         help="stop posting after this many seconds")
    posting.add_argument("--no-retry", action="store_true", help="do not retry 5xx answers like Dialpad does")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onduty.simulator import SimulationConfig, expected_results, generate
    from onduty.simulator.files import expected_path, read_deliveries, write_deliveries, write_expected
    from schemas.topics import DEFAULT_PARTITIONS

    if args.verify:
        return _verify(args)
    if not (args.out or args.post is not None or args.replay):
        print("onduty simulate: say where the traffic goes: --out FILE, --post [URL] or --replay FILE "
              "(or --verify FILE)", file=sys.stderr)
        return 2
    if args.rate and args.speed:
        print("onduty simulate: use either --rate or --speed, not both", file=sys.stderr)
        return 2

    if args.replay:
        try:
            deliveries = list(read_deliveries(args.replay))
        except (OSError, ValueError) as exc:
            print(f"onduty simulate: --replay {args.replay}: {_reason(exc)}", file=sys.stderr)
            return 2
        print(f"read {len(deliveries)} deliveries from {args.replay}", file=sys.stderr)
        return _post(deliveries, args)

    grace_ms = args.grace if args.grace is not None else env_duration_ms("GRACE", "5m")
    if args.out and not args.no_expected:  # their settings are checked before anything is written
        sizes = args.windows or _env_window_sizes_ms()
        partitions = args.partitions or _env_partitions(DEFAULT_PARTITIONS)
    try:
        config = SimulationConfig(
            agents=args.agents, call_centers=args.call_centers, seed=args.seed,
            start_ms=recent_start_ms(args.duration) if args.start is None else args.start,
            duration_ms=args.duration, duplicate_share=args.duplicates, out_of_order_share=args.out_of_order,
            close_windows=args.close_windows, grace_ms=grace_ms,
        )
    except ValueError as exc:
        print(f"onduty simulate: {exc}", file=sys.stderr)
        return 2
    simulation = generate(config)
    print(f"simulated {len(simulation.events)} events, {len(simulation.deliveries)} deliveries "
          f"({config.agents} agents, {config.call_centers} call centers, seed {config.seed})", file=sys.stderr)
    if args.out:
        try:
            write_deliveries(args.out, simulation.deliveries)
            print(f"wrote {args.out}", file=sys.stderr)
            if not args.no_expected:
                expected = expected_results(simulation.payloads, sizes, grace_ms, partitions)
                write_expected(expected_path(args.out), simulation, expected)
                print(f"wrote {expected_path(args.out)} (windows complete until {expected['complete_until_ms']})",
                      file=sys.stderr)
        except OSError as exc:  # no such directory, no permission, a full disk
            print(f"onduty simulate: --out {args.out}: cannot write {exc.filename or args.out}: {_reason(exc)}",
                  file=sys.stderr)
            return 2
    if args.post is not None:
        return _post(simulation.deliveries, args)
    return 0


def _env_window_sizes_ms() -> list[int]:
    try:
        return parse_window_sizes_ms(env_str("WINDOWS", "15m,1h,1d"))
    except ValueError as exc:
        raise SettingsError(f"ONDUTY_WINDOWS: {exc}") from None


def _env_partitions(default: int) -> int:
    partitions = env_int("PARTITIONS", default)
    if partitions <= 0:
        raise SettingsError(f"ONDUTY_PARTITIONS must be positive, not {partitions}")
    return partitions


def _reason(exc: Exception) -> str:
    """What went wrong with a file, without Python's ``[Errno 2]`` decoration."""
    return exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)


def _post(deliveries: list, args: argparse.Namespace) -> int:
    from onduty.simulator.posting import PostSettings, dated_too_far_ahead, post_deliveries
    from processors.event_time import MAX_FUTURE_MS

    secret = None
    if not args.unsigned:
        secrets = env_list("WEBHOOK_SECRETS")
        secret = args.secret or (secrets[0] if secrets else None)
        if not secret:
            print("onduty simulate: no secret to sign with: set ONDUTY_WEBHOOK_SECRETS, pass --secret, "
                  "or --unsigned", file=sys.stderr)
            return 2
    settings = PostSettings(
        url=args.post or default_url(), secret=secret, concurrency=args.concurrency, rate_per_s=args.rate,
        speed=args.speed, retry=not args.no_retry, max_seconds=args.max_seconds,
    )
    ahead = dated_too_far_ahead(deliveries, settings, int(time.time() * 1000), MAX_FUTURE_MS)
    if ahead:
        print(f"onduty simulate: {ahead} of {len(deliveries)} deliveries would be dated more than "
              f"{MAX_FUTURE_MS // 60_000} minutes ahead of the wall clock when posted, which the processors refuse "
              "as implausible: start earlier (--start, e.g. the default) or post at --speed 1 or slower",
              file=sys.stderr)
        return 2
    print(f"posting {len(deliveries)} deliveries to {settings.url}", file=sys.stderr)
    report = asyncio.run(post_deliveries(deliveries, settings))
    print(report.summary())
    ok = sum(n for code, n in report.statuses.items() if 200 <= code < 300)
    return 0 if ok == report.total else 1


def _verify(args: argparse.Namespace) -> int:
    import json

    from aiokafka.errors import KafkaConnectionError

    from onduty.env import kafka_bootstrap
    from onduty.simulator.files import expected_path
    from onduty.simulator.verify import verify

    path = args.verify if args.verify.name.endswith(".expected.json") else expected_path(args.verify)
    try:
        expected = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"onduty simulate: --verify {args.verify}: cannot read the expected results {path}: {_reason(exc)} "
              "(`onduty simulate --out FILE` writes them)", file=sys.stderr)
        return 2
    bootstrap = kafka_bootstrap()
    try:
        result = asyncio.run(verify(bootstrap, expected, wait_s=args.verify_wait))
    except KafkaConnectionError as exc:
        print(f"onduty simulate: --verify: cannot reach Kafka at {bootstrap} (ONDUTY_KAFKA_BOOTSTRAP): {exc}",
              file=sys.stderr)
        return 2
    print(result.summary())
    print("the derived topics match the expected results" if result.ok else "the derived topics differ")
    return 0 if result.ok else 1
