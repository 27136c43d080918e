"""``onduty tail <topic>``: print a topic's records for a person — key, decoded value, tombstones as such."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from datetime import datetime, timezone

from onduty.env import kafka_bootstrap


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tail", help="pretty-print a topic's records (key, decoded value, tombstones) as they arrive",
        description="Follows the topic from its end (new records only) until Ctrl-C, unless told otherwise.",
    )
    parser.add_argument("topic", help="e.g. onduty.callcenter-agents.v1 (see `onduty topics --check`)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record still kept")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="stop after N records")
    parser.add_argument("--to-end", action="store_true",
                        help="stop at the end of the topic as it was when tail started, instead of following")
    parser.add_argument("--compact", action="store_true", help="one line per record")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (ONDUTY_KAFKA_BOOTSTRAP)")
    parser.set_defaults(func=run)


def format_record(record, compact: bool = False) -> str:
    """``topic[partition]@offset time key=…`` then the value as JSON; a null value is shown as a tombstone."""
    when = datetime.fromtimestamp(record.timestamp / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    key = record.key.decode(errors="replace") if record.key is not None else "(no key)"
    head = f"{record.topic}[{record.partition}]@{record.offset} {when.replace('+00:00', 'Z')} key={key}"
    if record.value is None:
        return f"{head} TOMBSTONE (key deleted)"
    try:
        value = json.loads(record.value)
        text = json.dumps(value, ensure_ascii=False, sort_keys=False, indent=None if compact else 2)
    except ValueError:
        text = repr(record.value)
    if compact:
        return f"{head} {text}"
    return head + "\n" + "\n".join("  " + line for line in text.splitlines())


def run(args: argparse.Namespace) -> int:
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # records on stdout, not client chatter
    try:
        return asyncio.run(tail(args, args.bootstrap or kafka_bootstrap(), sys.stdout))
    except KeyboardInterrupt:
        return 0


async def tail(args: argparse.Namespace, bootstrap: str, out) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    partition_ids = await _partitions(bootstrap, args.topic)
    if not partition_ids:
        print(f"onduty tail: no topic {args.topic!r} on {bootstrap}; "
              "`onduty topics --check` lists the pipeline's topics", file=sys.stderr)
        return 2
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        partitions = [TopicPartition(args.topic, p) for p in partition_ids]
        consumer.assign(partitions)
        if args.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        end = await consumer.end_offsets(partitions) if args.to_end else None
        shown = 0
        while not stop.is_set():
            if end is not None and all([await consumer.position(tp) >= end[tp] for tp in partitions]):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for tp in sorted(batch, key=lambda tp: tp.partition):
                for record in batch[tp]:
                    if end is not None and record.offset >= end[tp]:
                        continue
                    print(format_record(record, args.compact), file=out, flush=True)
                    shown += 1
                    if args.max is not None and shown >= args.max:
                        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await consumer.stop()
    return 0


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition ids, empty when it does not exist (asking never creates it)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError

    from onduty.topics_admin import TopicsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
    except KafkaConnectionError as exc:  # reported by `onduty` as one line, like `onduty topics` does
        raise TopicsError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        if topic not in await admin.list_topics():
            return []
        (described,) = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()
