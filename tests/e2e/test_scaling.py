"""Scaling out, proven: two workers, one stopped mid-stream and a new one started, end with exactly the derived
topics a single worker produces from the same input.

Everything runs as the local stack runs it (`onduty topics`, `onduty ingest`, `onduty processor` processes from
``onduty.stack``); a realistic signed stream from the simulator goes through the ingest's HTTP endpoint. Then the
derived topics are emptied and one worker (a new consumer group, so fresh tables) gets the same raw records, copied
to a raw topic of its own once it runs; both results are compared topic by topic, and the rosters with the
simulator's independent expectation.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from onduty.simulator.expected import expected_results
from onduty.simulator.posting import body_for
from onduty.simulator.traffic import SimulationConfig, generate
from onduty.stack import WEBHOOK_PATH, LocalStack, StackConfig
from schemas import decode_agent_status_event, dedup_identity
from schemas.topics import (
    AGENT_TIME_IN_STATUS,
    CALLCENTER_AGENTS,
    CALLCENTER_TIME_IN_STATUS,
    RAW_AGENT_STATUS,
    REJECTED_AGENT_STATUS,
    STATUS_INTERVALS,
    pipeline_topics,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SECRET = "e2e-webhook-secret-of-at-least-32-bytes"
DERIVED = [spec for spec in pipeline_topics() if spec.name not in (RAW_AGENT_STATUS, REJECTED_AGENT_STATUS)]
SINGLE_RAW = "e2e.single.agent-status.v1"
SIMULATION = SimulationConfig(agents=40, call_centers=3, seed=6, duration_ms=4 * 3_600_000,
                              duplicate_share=0.03, out_of_order_share=0.02, close_windows=True)


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000)  # below Linux's ephemeral range
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def stack_for(var_dir: Path, bootstrap: str, app_id: str, raw_topic: str = RAW_AGENT_STATUS) -> LocalStack:
    environ = {
        **os.environ,
        "ONDUTY_RAW_TOPIC": raw_topic,
        "ONDUTY_WEBHOOK_SECRETS": SECRET,
        "ONDUTY_PROCESSOR_APP_ID": app_id,
        # wall-clock idle advance would make the result depend on timing: both runs replay by event time only
        "ONDUTY_IDLE_ADVANCE": "false",
    }
    environ.pop("ONDUTY_ALLOW_UNSIGNED", None)
    config = StackConfig(var_dir=var_dir, bootstrap=bootstrap, ingest_port=free_port_block(1),
                         first_web_port=free_port_block(3), workers=2, environ=environ)
    return LocalStack(config)


async def post(url: str, payloads: list[dict], concurrency: int = 8) -> Counter[int]:
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(payloads), concurrency):
            async def send(payload: dict) -> None:
                body, content_type = body_for(payload, SECRET)
                async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
                    await response.read()
                    statuses[response.status] += 1

            await asyncio.gather(*(send(p) for p in payloads[start:start + concurrency]))
    return statuses


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str,
                    raw_topic: str = RAW_AGENT_STATUS) -> dict[TopicPartition, tuple[int, int]]:
    """The partitions of the raw topic, of the group's re-key topics and of every topic the group committed on
    whose records it has not all processed yet: (committed offset, end offset) of each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
        # the group's own re-key topics, also the partitions it never committed on yet
        rekeyed = {t for t in await admin.list_topics()
                   if t.startswith(f"{group}-") and not t.endswith("-changelog") and "__assignor" not in t}
    finally:
        await admin.close()
    inputs = {raw_topic} | rekeyed
    ends = await end_offsets(bootstrap, sorted({tp.topic for tp in committed} | inputs))
    return {tp: (committed.get(tp, 0), end) for tp, end in ends.items()
            if (tp.topic in inputs or tp in committed) and end > committed.get(tp, 0)}


async def wait_until_settled(bootstrap: str, group: str, stack: LocalStack, deadline_s: float = 240.0) -> None:
    """No lag on the group's inputs and no new record on any derived topic for a few seconds."""
    raw_topic = stack.config.environ["ONDUTY_RAW_TOPIC"]
    deadline = time.monotonic() + deadline_s
    quiet_since, last = None, None
    while True:
        dead = stack.dead_service()
        assert dead is None, f"{dead.name} {dead.exit_reason()}:\n{dead.log_tail()}"
        behind = await group_lag(bootstrap, group, raw_topic)
        lag = sum(end - committed for committed, end in behind.values())
        ends = await end_offsets(bootstrap, [spec.name for spec in DERIVED])
        if lag == 0 and ends == last:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 6.0:
                return
        else:
            quiet_since, last = None, ends
        assert time.monotonic() < deadline, (
            f"group {group} not settled within {deadline_s:.0f}s (lag {lag}: "
            + ", ".join(f"{tp.topic}[{tp.partition}] committed {c} of {e}" for tp, (c, e) in sorted(behind.items()))
            + f"){crashes(stack.config.var_dir)}")
        await asyncio.sleep(1.0)


def crashes(var_dir: Path) -> str:
    """The workers' own account of a stuck group: stages or Faust agents that crashed, with where."""
    found = []
    for log_file in sorted((var_dir / "logs").glob("processor-*.log")):
        lines = log_file.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "Crashed reason=" in line:
                trace = []
                for follow in lines[i + 1:i + 60]:
                    if follow.startswith("["):  # the next log line: this traceback ended
                        break
                    trace.append(follow)
                where = [l.strip() for l in trace if l.strip().startswith('File "') and "/processors/" in l]
                found.append(f"{log_file.name}: {line.split('] ', 3)[-1].strip()} at {where[-1] if where else '?'}")
    unique = sorted(set(found))
    return "; crashes: " + " | ".join(unique[:5]) if unique else ""


async def snapshot(bootstrap: str) -> dict[str, object]:
    """Each derived topic as a consumer ends up with it: compacted topics as the last value per key (tombstones
    delete), status intervals as the last record per (agent, start), the other append-only topics as the set of
    distinct records (they are at-least-once; a replay may repeat one)."""
    ends = await end_offsets(bootstrap, [spec.name for spec in DERIVED])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    result: dict[str, object] = {}
    try:
        for spec in DERIVED:
            partitions = [tp for tp in ends if tp.topic == spec.name]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            records = []
            while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
            records.sort(key=lambda r: (r.partition, r.offset))
            if spec.cleanup_policy == "compact":
                latest: dict[bytes, bytes] = {}
                for record in records:
                    if record.value is None:
                        latest.pop(record.key, None)
                    else:
                        latest[record.key] = comparable(spec.name, record.value)
                result[spec.name] = latest
            elif spec.name == STATUS_INTERVALS:
                # an interval is identified by (agent, start_ms); a later one (a late correction) supersedes it
                intervals: dict[tuple[bytes, int], bytes] = {}
                for record in records:
                    intervals[(record.key, json.loads(record.value)["start_ms"])] = record.value
                result[spec.name] = intervals
            else:
                result[spec.name] = {(r.key, r.value) for r in records}
    finally:
        await consumer.stop()
    return result


async def copy_topic(bootstrap: str, source: str, target: str) -> list[bytes]:
    """Copy every record (key, value, headers, timestamp) into the same partition of ``target``, in order; return
    the values copied."""
    ends = await end_offsets(bootstrap, [source])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    copied: list[bytes] = []
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while any([await consumer.position(tp) < ends[tp] for tp in ends]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    if r.offset < ends[tp]:
                        await producer.send(target, r.value, key=r.key, partition=r.partition,
                                            timestamp_ms=r.timestamp, headers=list(r.headers))
                        copied.append(r.value)
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return copied


def identity_of(event_json: bytes) -> str:
    return dedup_identity(decode_agent_status_event(event_json))


async def recreate_derived_topics(bootstrap: str, stack: LocalStack) -> None:
    names = [spec.name for spec in DERIVED]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
        deadline = time.monotonic() + 60
        while set(names) & set(await admin.list_topics()):
            assert time.monotonic() < deadline, "derived topics were not deleted"
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    await asyncio.to_thread(stack.run_topics)


async def test_two_workers_with_one_replaced_mid_stream_equal_one_worker(own_kafka, tmp_path):
    simulation = generate(SIMULATION)
    payloads = simulation.payloads
    thirds = [payloads[: len(payloads) // 3], payloads[len(payloads) // 3: 2 * len(payloads) // 3],
              payloads[2 * len(payloads) // 3:]]

    # --- two workers; one stopped mid-stream, a new one started --------------------------------------------
    scaled = stack_for(tmp_path / "scaled", own_kafka, app_id="e2e-scaled")
    try:
        await asyncio.to_thread(scaled.start)
        url = f"http://127.0.0.1:{scaled.config.ingest_port}{WEBHOOK_PATH}"
        statuses = await post(url, thirds[0])
        first_worker = next(s for s in scaled.services if s.name == "processor-1")
        await asyncio.to_thread(scaled.stop_service, first_worker)  # while the others still process
        statuses += await post(url, thirds[1])
        replacement = scaled.start_processor(2, name="processor-3")
        await asyncio.to_thread(scaled.wait_ready, replacement)
        statuses += await post(url, thirds[2])
        assert statuses == Counter({202: len(payloads)})
        await wait_until_settled(own_kafka, "e2e-scaled", scaled)
        scaled_result = await snapshot(own_kafka)
    finally:
        await asyncio.to_thread(scaled.stop)

    # --- the same raw topic through one worker, from empty derived topics and fresh tables ------------------
    # The single worker gets the very records the ingest published, copied to a raw topic of its own after it
    # started (as the two workers got them while running), partition by partition, in order.
    single = stack_for(tmp_path / "single", own_kafka, app_id="e2e-single", raw_topic=SINGLE_RAW)
    try:
        await recreate_derived_topics(own_kafka, single)
        worker = single.start_processor(0)
        await asyncio.to_thread(single.wait_ready, worker)
        await asyncio.to_thread(single.wait_group_stable)
        copied = await copy_topic(own_kafka, RAW_AGENT_STATUS, SINGLE_RAW)
        # every posted event is in the raw topic; an event may be there twice (at-least-once: on a busy machine an
        # acknowledgement can come after the publish deadline, when the event went to the spool too)
        assert len(copied) >= len(payloads)
        assert {identity_of(value) for value in copied} == {identity_of(json.dumps(p).encode()) for p in payloads}
        await wait_until_settled(own_kafka, "e2e-single", single)
        single_result = await snapshot(own_kafka)
    finally:
        await asyncio.to_thread(single.stop)

    expected = expected_results(payloads)["rosters"]
    problems = [f"rosters with {run}: {roster_difference(rosters(result), expected)}"
                for run, result in (("one worker", single_result), ("two workers", scaled_result))
                if rosters(result) != expected]
    differ = [spec.name for spec in DERIVED if scaled_result[spec.name] != single_result[spec.name]]
    problems += [f"{name}: {difference(scaled_result[name], single_result[name])}" for name in differ]
    assert not problems, "two workers (one replaced mid-stream) and one worker disagree:\n" + "\n".join(problems)


def comparable(topic: str, value: bytes) -> bytes:
    """The record as the comparison sees it: canonical JSON; window records without their ``revision``.

    A window's revision orders its emissions within one run; it depends on batch boundaries and replays, so it
    differs between one worker and several (docs/semantics.md). Totals, ``final`` and ``agents`` must not.
    """
    record = json.loads(value)
    if topic in (AGENT_TIME_IN_STATUS, CALLCENTER_TIME_IN_STATUS):
        record.pop("revision", None)
    return json.dumps(record, sort_keys=True).encode()


def rosters(result: dict[str, object]) -> dict[str, dict[str, str]]:
    """Call center -> agent -> on_duty_status, from the callcenter-agents table."""
    roster: dict[str, dict[str, str]] = {}
    for value in result[CALLCENTER_AGENTS].values():
        record = json.loads(value)
        roster.setdefault(record["call_center_id"], {})[record["agent_id"]] = record["on_duty_status"]
    return roster


def roster_difference(got: dict[str, dict[str, str]], expected: dict[str, dict[str, str]]) -> str:
    """Differences from the simulator's independent expectation, per call center."""
    parts = []
    for center in sorted(got.keys() | expected.keys()):
        g, e = got.get(center, {}), expected.get(center, {})
        missing, extra = sorted(e.keys() - g.keys()), sorted(g.keys() - e.keys())
        wrong = sorted(a for a in g.keys() & e.keys() if g[a] != e[a])
        if missing or extra or wrong:
            parts.append(f"{center}: {len(missing)} agents missing, {len(extra)} extra, {len(wrong)} in the wrong "
                         f"status (e.g. {(missing + extra + wrong)[:3]})")
    return "; ".join(parts)


def difference(scaled, single) -> str:
    """What differs, briefly: keys only on one side, and for shared keys the JSON fields that differ."""
    if scaled == single:
        return ""
    if isinstance(scaled, set):
        return f"{len(scaled - single)} records only with two workers, {len(single - scaled)} only with one"
    only_scaled, only_single = scaled.keys() - single.keys(), single.keys() - scaled.keys()
    fields: Counter[str] = Counter()
    example = ""
    for key in scaled.keys() & single.keys():
        if scaled[key] != single[key]:
            a, b = json.loads(scaled[key]), json.loads(single[key])
            changed = sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f))
            fields.update(changed)
            example = example or f"e.g. key {key!r}: " + ", ".join(f"{f} {a.get(f)!r} vs {b.get(f)!r}" for f in changed)
    return (f"{len(only_scaled)} keys only with two workers, {len(only_single)} only with one; "
            f"{sum(1 for k in scaled.keys() & single.keys() if scaled[k] != single[k])} values differ "
            f"(fields: {dict(fields)}) {example[:600]}")
