"""Faust wiring of time in status: an agent-keyed stage and a call-center-keyed stage.

raw events (key agent id) [+ ticks, live mode] --TimeInStatusStage.handle_raw_batch--> tables tis-agents, tis-history,
    tis-clock; onduty.status-intervals.v1, onduty.agent-time-in-status.v1, onduty.late-events.v1;
    contributions topic: per batch, one ContributionBatch per partition (its call centers' contributions, then
    the source watermarks reached)
contributions (partitioned by call center id) --time-in-status-callcenters--> tables tis-callcenters, tis-cc-clock;
    onduty.callcenter-time-in-status.v1

The rules live in ``time_in_status.py`` and ``time_in_status_callcenters.py``. Per batch (``batches.batch_agent``)
this module reads each key once, applies the events, and queues the records and each changed table key once on an
``Outbox``. The tables' changelog records are written only before an offset commit, once every batch in flight has
its records delivered (``processors.changelog``): a durable table value is never ahead of the records it implies,
so a replay after a crash re-emits what could have been lost (same records, same revisions) and duplicates of what
was kept change nothing. Raw batches and ticks write the same tables; each is applied whole (synchronously) and
their outboxes are delivered in the order they were applied.

Per-partition state (watermarks, which agents have windows to close) is kept under a key that the producer's
partitioner maps to that partition, so that its changelog is co-partitioned with the source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import faust
import msgspec

from onduty.env import format_duration
from processors.faust_io import (
    StructTable,
    struct_table,
    output_topic,
    raw_topic,
)
from processors.batches import BatchRecord, batch_agent
from processors.idle_advance import Watch, idle_advanced_date
from processors.internal_codec import InternalDecoder, encode_internal
from processors.outbox import Outbox
from processors.raw_events import RawEvent
from processors.settings import ProcessorSettings
from processors.time_in_status import (
    AgentTimeline,
    CallCenterContribution,
    ChunkStore,
    Emitted,
    Step,
    TimeInStatusConfig,
    TimeInStatusCore,
)
from processors.time_in_status_callcenters import (
    CallCenterTimeline,
    CallCenterWindow,
    SourceWatermarks,
    WatermarkMarker,
    ContributionBatch,
    apply_contribution,
    beyond_horizon,
    is_forgotten,
    close,
    contribution_key,
    has_open_windows,
)
from schemas import encode
from schemas.partitioning import default_partition
from schemas import topics as t
from schemas.time_in_status import CallCenterTimeInStatus

log = logging.getLogger(__name__)

BATCH_KEY = b"~batch"
"""Key of ``ContributionBatch`` records on the contributions topic (each sent to an explicit partition)."""
MARKER_KEY = b"~watermark"
"""Key of a single watermark marker, as versions before ``ContributionBatch`` sent them (still read)."""


class Tick(msgspec.Struct, frozen=True):
    """Wall-clock tick for one source partition (live mode): lets an idle partition's watermark advance."""

    partition: int
    sent_ms: int
    """Wall-clock time the tick was sent; a tick older than the idle time (replayed after a crash) is ignored."""

    @classmethod
    def from_message(cls, message: BatchRecord) -> "Tick":
        try:
            sent_ms = int(message.value)
        except (TypeError, ValueError):
            sent_ms = 0  # not a tick this version sent: too old to use
        return cls(message.partition, sent_ms)


class PartitionClock(msgspec.Struct):
    """Event-time clock of one source partition (``tis-clock`` table)."""

    max_date_ms: int | None = None
    """Highest plausible event ``date`` seen on the partition, or moved on by idle advance."""
    last_event_wall_ms: int = 0
    """Wall-clock time of the latest event, for idle advance."""
    event_max_date_ms: int | None = None
    """Highest plausible event ``date`` seen on the partition from events alone (idle advance excluded)."""


class CloseSchedule:
    """Per source partition, the agents with open windows and the watermark at which each one's next window closes.

    It follows from the agents' timelines (``TimeInStatusCore.next_close_ms``), so it is kept in memory only: a
    partition's schedule is rebuilt from the ``tis-agents`` table the first time the partition is used after an
    assignment change. (Kept in the partition's clock record, it was re-encoded and re-sent with every batch: a
    few KB per partition and batch however few events the batch held.)
    """

    def __init__(self, core: TimeInStatusCore, agent_table: StructTable, partitions: int) -> None:
        self.core = core
        self.agent_table = agent_table
        self.partitions = partitions
        self._by_partition: dict[int, dict[str, int]] = {}

    def forget(self) -> None:
        """After an assignment change: rebuild each partition's schedule when it is next used."""
        self._by_partition.clear()

    def of(self, partition: int) -> dict[str, int]:
        """agent id -> watermark at which its next window closes, for the agents of ``partition``."""
        schedule = self._by_partition.get(partition)
        if schedule is None:
            schedule = self._by_partition[partition] = {}
            for key, state in self.agent_table.data.items():
                if default_partition(key, self.partitions) == partition:
                    self.update(partition, state)
        return schedule

    def update(self, partition: int, state: AgentTimeline) -> None:
        schedule = self.of(partition)
        next_close = self.core.next_close_ms(state)
        if next_close is None:
            schedule.pop(state.agent_id, None)
        else:
            schedule[state.agent_id] = next_close


class CallCenterClock(msgspec.Struct):
    """Source watermarks as seen by one contributions partition, and its call centers with windows to emit."""

    sources: SourceWatermarks = msgspec.field(default_factory=SourceWatermarks)
    pending: list[str] = []


HISTORY_CHUNK_MS = 3_600_000
"""One history record per agent and hour: each write stays small however busy the day."""


class HistoryChunk(msgspec.Struct, array_like=True):
    """One chunk (hour) of an agent's steps (``tis-history`` table, key ``<agent id>#<chunk index>``)."""

    chunk: int
    steps: list[Step]


def partition_keys(partitions: int) -> list[str]:
    """For each partition, a key the default (murmur2) partitioner maps to it."""
    keys: list[str | None] = [None] * partitions
    candidate = 0
    while any(k is None for k in keys):
        key = f"~partition-{candidate}"
        index = default_partition(key.encode(), partitions)
        if keys[index] is None:
            keys[index] = key
        candidate += 1
    return [k for k in keys if k is not None]


def window_record_key(entity_id: str, size_ms: int, start_ms: int) -> str:
    """``<id>:<window size>:<window start ms>``, e.g. ``42:15m:1700000000000``."""
    return f"{entity_id}:{format_duration(size_ms)}:{start_ms}"


def now_ms() -> int:
    return int(time.time() * 1000)


_contribution_decoder = InternalDecoder(CallCenterContribution)
_marker_decoder = InternalDecoder(WatermarkMarker)
_batch_decoder = InternalDecoder(ContributionBatch)


class TableChunkStore(ChunkStore):
    """An agent's history chunks, read from and written to the ``tis-history`` table."""

    def __init__(self, agent_id: str, table: StructTable) -> None:
        super().__init__({})
        self.agent_id = agent_id
        self.table = table

    def _key(self, index: int) -> str:
        return f"{self.agent_id}#{index}"

    def get(self, index: int) -> list[Step]:
        if index not in self.chunks and index not in self.dropped:
            record = self.table.lookup(self._key(index))
            self.chunks[index] = record.steps if record is not None else []
        return self.chunks.get(index, [])

    def flush(self, outbox: Outbox) -> None:
        for index in self.dropped:
            outbox.delete(self.table, self._key(index))
        for index in self.written:
            outbox.put(self.table, self._key(index), HistoryChunk(index, self.chunks[index]))


class CallCenterIndex(msgspec.Struct):
    """One call center's windows (``tis-callcenters`` table): window key -> emitted revision (0: not yet).

    The windows themselves are records of their own (``tis-cc-windows``, key ``<cc>#<size ms>:<start ms>``): one
    value per call center holding every window of the late horizon with every agent's share outgrew Kafka's record
    size within a day for a few hundred agents.
    """

    windows: dict[str, int] = {}
    closed_until_ms: int | None = None




class CallCenterStore:
    """Loads the part of a call center's timeline a batch needs, and writes back what changed."""

    def __init__(self, index_table: StructTable, window_table: StructTable, late_horizon_ms: int) -> None:
        self.index_table = index_table
        self.window_table = window_table
        self.late_horizon_ms = late_horizon_ms
        self.indexes: dict[str, CallCenterIndex] = {}
        self.loaded: dict[str, set[str]] = {}

    def _window(self, call_center_id: str, key: str) -> CallCenterWindow | None:
        return self.window_table.lookup(f"{call_center_id}#{key}")

    def load(self, call_center_id: str, everything: bool = False) -> CallCenterTimeline:
        """The timeline with its windows not emitted yet (or every window, for queries)."""
        index = self.index_table.lookup(call_center_id) or CallCenterIndex()
        keys = [k for k, revision in index.windows.items() if everything or revision == 0]
        windows = {k: w for k in keys if (w := self._window(call_center_id, k)) is not None}
        self.indexes[call_center_id] = index
        self.loaded[call_center_id] = set(windows)
        return CallCenterTimeline(call_center_id, windows, index.closed_until_ms)

    def ensure(self, timeline: CallCenterTimeline, key: str) -> None:
        """Load an emitted window a late contribution is about to change."""
        cc = timeline.call_center_id
        if key not in timeline.windows and key in self.indexes[cc].windows:
            window = self._window(cc, key)
            if window is not None:
                timeline.windows[key] = window
                self.loaded[cc].add(key)

    def save(self, timeline: CallCenterTimeline, outbox: Outbox) -> None:
        cc = timeline.call_center_id
        index, loaded = self.indexes[cc], self.loaded[cc]
        windows = dict(index.windows)
        for key in loaded - timeline.windows.keys():  # forgotten by close(): beyond the horizon
            outbox.delete(self.window_table, f"{cc}#{key}")
            windows.pop(key, None)
        for key, window in timeline.windows.items():
            outbox.put(self.window_table, f"{cc}#{key}", window)
            windows[key] = window.revision
        if timeline.closed_until_ms is not None:  # the same rule as close(), for windows this batch did not load
            horizon = timeline.closed_until_ms - self.late_horizon_ms
            for key, revision in list(windows.items()):
                size_ms, start_ms = (int(part) for part in key.split(":"))
                if key not in timeline.windows and revision > 0 and beyond_horizon(size_ms, start_ms, horizon):
                    outbox.delete(self.window_table, f"{cc}#{key}")
                    del windows[key]
        outbox.put(self.index_table, cc, CallCenterIndex(windows, timeline.closed_until_ms))


@dataclass
class TimeInStatusStage:
    """What the stage adds to the app, for the query views and tests."""

    core: TimeInStatusCore
    agent_table: StructTable
    history_table: StructTable
    callcenter_table: StructTable
    """Index of each call center's windows (keyed by call center id: the table queries are routed by)."""
    callcenter_window_table: StructTable
    sizes_ms: tuple[int, ...]
    late_horizon_ms: int
    apply_batch: Callable[[Sequence[RawEvent | Tick], Outbox], None]

    def handle_raw_batch(self, batch: Sequence[RawEvent], outbox: Outbox) -> None:
        """Part of a raw batch (the raw-topic stage delivers ``outbox``)."""
        self.apply_batch(batch, outbox)

    def agent(self, agent_id: str) -> tuple[AgentTimeline, ChunkStore] | None:
        state = self.agent_table.lookup(agent_id)
        return None if state is None else (state, TableChunkStore(agent_id, self.history_table))

    def call_center(self, call_center_id: str) -> CallCenterTimeline | None:
        if self.callcenter_table.lookup(call_center_id) is None:
            return None
        store = CallCenterStore(self.callcenter_table, self.callcenter_window_table, self.late_horizon_ms)
        return store.load(call_center_id, everything=True)


def register(app: faust.App, settings: ProcessorSettings) -> TimeInStatusStage:
    partitions = settings.partitions
    config = TimeInStatusConfig(tuple(settings.window_sizes_ms), settings.grace_ms, settings.late_horizon_ms,
                                chunk_ms=HISTORY_CHUNK_MS)
    core = TimeInStatusCore(config)
    specs = {spec.name: spec for spec in t.pipeline_topics(settings.raw_topic, partitions)}
    for name in (t.STATUS_INTERVALS, t.AGENT_TIME_IN_STATUS, t.CALLCENTER_TIME_IN_STATUS, t.LATE_EVENTS):
        output_topic(app, specs[name])
    contributions = raw_topic(app, f"{settings.app_id}-tis-contributions", partitions, internal=True)
    ticks_name = f"{settings.app_id}-tis-ticks"
    ticks = raw_topic(app, ticks_name, partitions, internal=True)
    agent_table = struct_table(app, "tis-agents", AgentTimeline, partitions, "Time-in-status timeline of each agent")
    history_table = struct_table(app, "tis-history", HistoryChunk, partitions,
                                 "Hourly chunks of each agent's history", prefixed=True)
    clock_table = struct_table(app, "tis-clock", PartitionClock, partitions,
                               "Event-time clock of each source partition")
    cc_table = struct_table(app, "tis-callcenters", CallCenterIndex, partitions,
                            "Index of each call center's time-in-status windows")
    cc_window_table = struct_table(app, "tis-cc-windows", CallCenterWindow, partitions,
                                   "Time-in-status windows of each call center, by <cc>#<size>:<start>", prefixed=True)
    cc_clock_table = struct_table(app, "tis-cc-clock", CallCenterClock, partitions,
                                  "Source watermarks per contributions partition")
    keys = partition_keys(partitions)
    close_schedule = CloseSchedule(core, agent_table, partitions)
    watches: dict[int, Watch] = {}
    """Per source partition, since when this worker watches it for idle advance (in memory: a restart or an
    assignment change starts new watches)."""

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: faust.App, revoked: set, **kwargs: object) -> None:
        close_schedule.forget()
        watches.clear()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: faust.App, assigned: set, **kwargs: object) -> None:
        close_schedule.forget()
        watches.clear()
    contributions_name = contributions.get_topic_name()

    def agent_batch(items: Sequence[RawEvent | Tick], outbox: Outbox) -> None:
        wall = now_ms()
        timelines: dict[str, AgentTimeline] = {}
        stores: dict[str, TableChunkStore] = {}
        clocks: dict[int, PartitionClock] = {}
        before: dict[int, int | None] = {}
        touched: dict[int, set[str]] = {}
        out = Emitted()

        def clock_of(partition: int) -> PartitionClock:
            if partition not in clocks:
                clocks[partition] = clock_table.lookup(keys[partition]) or PartitionClock()
                before[partition] = core.watermark(clocks[partition].max_date_ms)
            return clocks[partition]

        def timeline_of(agent_id: str) -> tuple[AgentTimeline, TableChunkStore]:
            if agent_id not in timelines:
                timelines[agent_id] = agent_table.lookup(agent_id) or AgentTimeline(agent_id)
                stores[agent_id] = TableChunkStore(agent_id, history_table)
            return timelines[agent_id], stores[agent_id]

        for item in items:
            clock = clock_of(item.partition)
            if isinstance(item, Tick):
                fresh = item.sent_ms > wall - settings.idle_after_ms  # a replayed backlog of ticks must not
                if not settings.idle_advance or not fresh:  # outrun the raw events
                    continue
                watch = watches.get(item.partition)
                if watch is None:  # the first tick since this worker has the partition: the watch starts
                    watches[item.partition] = Watch(wall, clock.max_date_ms)
                    continue
                # Event time moves on by the wall-clock time the partition has been idle, counted from its latest
                # event (or the watch's start): live data ends up near the wall clock; replayed history, however
                # old, is never thrown years ahead (which would make every later event of it "late").
                advanced = idle_advanced_date(watch, clock.event_max_date_ms, clock.last_event_wall_ms, wall,
                                              settings.idle_after_ms)
                if advanced is not None:
                    clock.max_date_ms = max(clock.max_date_ms or advanced, advanced)
                continue
            decoded = item.event
            agent_id = item.agent_id
            state, store = timeline_of(agent_id)
            partition_touched = touched.get(item.partition)
            if partition_touched is None:
                partition_touched = touched[item.partition] = set()
            partition_touched.add(agent_id)
            core.apply(state, store, decoded, core.watermark(clock.max_date_ms), wall, item.dedup_id, out)
            date = decoded.date
            if core.plausible(date, wall):
                if clock.max_date_ms is None or date > clock.max_date_ms:
                    clock.max_date_ms = date
                if clock.event_max_date_ms is None or date > clock.event_max_date_ms:
                    clock.event_max_date_ms = date
                clock.last_event_wall_ms = wall
        advanced: dict[int, int] = {}
        for partition, clock in clocks.items():
            watermark = core.watermark(clock.max_date_ms)
            if watermark is not None and watermark != before[partition]:
                advanced[partition] = watermark
            schedule = close_schedule.of(partition)
            due = {a for a, at in schedule.items() if watermark is not None and at <= watermark}
            due |= touched.get(partition, set())
            for agent_id in sorted(due):
                state, store = timeline_of(agent_id)
                core.close(state, store, watermark, out)
                close_schedule.update(partition, state)

        for interval in out.intervals:
            outbox.send(t.STATUS_INTERVALS, interval.agent_id.encode(), encode(interval))
        for record in out.agent_windows:
            key = window_record_key(record.agent_id, record.window_size_ms, record.window_start_ms)
            outbox.send(t.AGENT_TIME_IN_STATUS, key.encode(), encode(record))
        for late in out.late:
            log.info("late event for agent %s at %d: %s", late.agent_id, late.date_ms, late.reason)
            outbox.send(t.LATE_EVENTS, late.agent_id.encode(), encode(late))
        # One record per contributions partition: the batch's contributions to its call centers, then the
        # watermarks that let them close their windows (every partition needs every source's watermark).
        packed = {target: ContributionBatch([], []) for target in range(partitions)} if advanced else {}
        for contribution in out.contributions:
            target = default_partition(contribution.call_center_id.encode(), partitions)
            packed.setdefault(target, ContributionBatch([], [])).contributions.append(contribution)
        markers = [WatermarkMarker(partition, watermark) for partition, watermark in sorted(advanced.items())]
        for target, record in sorted(packed.items()):
            record.watermarks = markers
            outbox.send(contributions_name, BATCH_KEY, encode_internal(record), partition=target)
        for agent_id, state in timelines.items():
            if not state.seq:  # only rejected events (late-events topic): the agent stays unknown
                continue
            outbox.put(agent_table, agent_id, state)
            stores[agent_id].flush(outbox)
        for partition, clock in clocks.items():
            outbox.put(clock_table, keys[partition], clock)

    def callcenter_batch(messages: list[BatchRecord], outbox: Outbox) -> None:
        timelines: dict[str, CallCenterTimeline] = {}
        clocks: dict[int, CallCenterClock] = {}
        records: list[CallCenterTimeInStatus] = []
        store = CallCenterStore(cc_table, cc_window_table, settings.late_horizon_ms)

        def clock_of(partition: int) -> CallCenterClock:
            if partition not in clocks:
                clocks[partition] = cc_clock_table.lookup(keys[partition]) or CallCenterClock()
            return clocks[partition]

        def contribute(clock: CallCenterClock, contribution: CallCenterContribution) -> None:
            cc = contribution.call_center_id
            if cc not in timelines:
                timelines[cc] = store.load(cc)
            store.ensure(timelines[cc], contribution_key(contribution.window_size_ms, contribution.window_start_ms))
            if is_forgotten(timelines[cc], contribution, settings.late_horizon_ms):
                log.warning("call center %s: agent %s's share of the %s window at %d dropped: that window is beyond "
                            "the late horizon, no longer kept (its last record stands)", cc, contribution.agent_id,
                            format_duration(contribution.window_size_ms), contribution.window_start_ms)
                return
            records.extend(apply_contribution(timelines[cc], contribution, clock.sources.minimum()))
            if cc not in clock.pending:
                clock.pending.append(cc)

        def advance(clock: CallCenterClock, marker: WatermarkMarker) -> None:
            known = clock.sources.by_partition.get(marker.partition)
            clock.sources.by_partition[marker.partition] = max(known or marker.watermark_ms, marker.watermark_ms)

        for message in messages:
            clock = clock_of(message.partition)
            if message.key == BATCH_KEY:
                batch = _batch_decoder.decode(message.value)
                for contribution in batch.contributions:
                    contribute(clock, contribution)
                for marker in batch.watermarks:
                    advance(clock, marker)
            elif message.key == MARKER_KEY:
                advance(clock, _marker_decoder.decode(message.value))
            else:
                contribute(clock, _contribution_decoder.decode(message.value))
        for clock in clocks.values():
            watermark = clock.sources.minimum()
            still_open = []
            for cc in clock.pending:
                if cc not in timelines:
                    timelines[cc] = store.load(cc)
                records += close(timelines[cc], watermark, settings.late_horizon_ms)
                if has_open_windows(timelines[cc]):
                    still_open.append(cc)
            clock.pending = still_open
        for record in records:
            key = window_record_key(record.call_center_id, record.window_size_ms, record.window_start_ms)
            outbox.send(t.CALLCENTER_TIME_IN_STATUS, key.encode(), encode(record))
        for timeline in timelines.values():
            store.save(timeline, outbox)
        for partition, clock in clocks.items():
            outbox.put(cc_clock_table, keys[partition], clock)

    stage = TimeInStatusStage(core, agent_table, history_table, cc_table, cc_window_table, config.sizes_ms,
                              config.late_horizon_ms, agent_batch)

    batch_agent(app, contributions, settings)(callcenter_batch)

    if settings.idle_advance:  # replays never look at the wall clock
        @batch_agent(app, ticks, settings)
        def apply_ticks(messages: list[BatchRecord], outbox: Outbox) -> None:
            agent_batch([Tick.from_message(message) for message in messages], outbox)

        @app.timer(max(1.0, settings.idle_after_ms / 4000))
        async def send_ticks() -> None:
            await ticks.maybe_declare()
            value = str(now_ms()).encode()
            for partition in range(partitions):
                await app.producer.send(ticks_name, keys[partition].encode(), value, partition, None, None)

    return stage
