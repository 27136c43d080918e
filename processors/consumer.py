"""The worker's Kafka consumer: Faust's, handing whole fetches to batch stages and flushing changelogs on commit.

**Batch topics** (``processors.batches``): each partition's share of a fetch is appended to the topic's buffer in
one step instead of going through Faust's per-record path. Faust's bookkeeping that matters stays: its read
offsets and gaps, its offset commits (records are acknowledged through ``Consumer.ack``), its flow control
(records fetched while a rebalance stops the flow are dropped and the partitions sought back to their committed
offsets), its group membership, assignment and table recovery. Other topics take Faust's own path.

**Changelog flush** (``processors.changelog``): offsets are committed only once the table changes they imply are
in the changelog.

**Seeks** (``processors.seeks``): every seek and fetch is numbered in the consumer's thread, and the drain loop drops
a partition's records fetched before a seek of it. The read offsets a seek implies are set by the drain loop when
the first records fetched after it arrive, not by the seek.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from faust.transport.consumer import Fetcher, ensure_TP
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from processors.batches import BatchRecord, batch_topics_of
from processors.changelog import pending_changelog
from processors.faust_io import known_batches_in_flight
from processors.seeks import SeekLedger


class FetchedRecords(dict):  # type: ignore[type-arg]
    """A fetch's records by partition, tagged in the consumer's thread with the number of seeks made before it."""

    def __init__(self, records: Mapping[Any, Any], seeks_before: int) -> None:
        super().__init__(records)
        self.seeks_before = seeks_before


class BatchingConsumer(Consumer):
    """Faust's aiokafka consumer with batch topics and a changelog flush before every offset commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeks = SeekLedger()
        self._awaiting_seek: set[TP] = set()
        """Stream partitions assigned and not yet sought to their committed offsets: not fetched meanwhile."""
        self._missing: dict[TP, tuple[int, int]] = {}
        """Batch topic partitions whose commit waits behind unacknowledged records: (committed offset, commits
        that found it there), for ``_refetch_missing_records``."""

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Faust's ``force_commit`` around a consistent cut: the tables' changed values and the offsets acknowledged
        when no batch was in flight; the changelog records are written, then exactly those offsets committed.
        (Faust's attached messages, which ``force_commit`` also publishes, are not used by the stages.)"""
        in_flight = known_batches_in_flight(self.app)
        changelog = pending_changelog(self.app)
        sensor_state = self.app.sensors.on_commit_initiated(self)
        async with in_flight.exclusive() if in_flight is not None else contextlib.nullcontext():
            cut = changelog.cut()
            offsets = self._filter_committable_offsets(list(self._filter_tps_with_pending_acks(topics)))
        await changelog.write(self.app.producer._ensure_producer(), cut)
        did_commit = False
        if offsets:
            did_commit = await self._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        self.app.sensors.on_commit_completed(self, sensor_state)
        await self._refetch_missing_records()
        return did_commit

    async def _refetch_missing_records(self) -> None:
        """A safety net: a batch topic partition whose committed offset has waited behind records that were never
        acknowledged, while later ones were, for two commits in a row.

        A batch's records are acknowledged in order, so such a gap means records that never reached a stage, or a
        committed offset moved back behind acknowledged ones. Both causes found so far are handled: a fetch handled
        across a seek (``processors.seeks``) and the seek that ends a recovery (``perform_seek``); the net stays
        for what is not known yet (docs/DEVELOPING.md). The commit never passes such a gap (``_new_offset``).
        A partition of the workers' own re-key topics is fetched again from its committed offset: the missing
        records and then the later ones again, in order, which the call-center stages turn into the same final
        state. A raw-topic partition is not (the roster would take the missing events for replays and skip them):
        it stays behind, with an error in the log.
        """
        batch_topics = batch_topics_of(self.app)
        internal_prefix = f"{self.app.conf.id}-"
        assignment = self.assignment()
        previously, self._missing = self._missing, {}
        for tp, acked in list(self._acked.items()):  # the seeks below let batches acknowledge meanwhile
            committed = self._committed_offset.get(tp)
            if not (acked and committed is not None and tp.topic in batch_topics and tp in assignment
                    and min(acked) > committed):
                continue
            last_committed, commits = previously.get(tp, (None, 0))
            commits = commits + 1 if last_committed == committed else 1
            self._missing[tp] = (committed, commits)
            if commits < 2:  # first seen: give it one more commit interval
                continue
            if not tp.topic.startswith(internal_prefix):
                if commits == 2:  # reported once
                    self.log.error("%s: the records from offset %d on never reached a stage, while later ones did "
                                   "(see docs/DEVELOPING.md): the partition's offset stays behind them",
                                   tp, committed)
                continue
            self.log.warning("%s: the records from offset %d on never reached a stage, while later ones did; "
                             "fetching the partition again from there", tp, committed)
            del self._missing[tp]  # counted afresh: fetched again every two commits while it stays behind
            try:
                await self.seek_wait({tp: committed})
            except (KafkaError, TimeoutError) as exc:  # e.g. no longer assigned: its owner starts from the commit
                self.log.warning("%s: fetching again failed: %r", tp, exc)

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's next offset to commit for ``tp``, except past a record never acknowledged at the committed offset.

        Faust keeps the committed offset as Kafka does, the next offset to read (records from it on are acknowledged),
        but its check for a gap at the head of the acknowledged offsets lets a gap of one record through: with 10
        committed and 11 and 12 acknowledged, it commits 13 and record 10 is skipped for good (with 0 committed it
        checks nothing). Here the commit waits until the acknowledged offsets and the known gaps (offsets without a
        record) start at the committed offset; meanwhile the safety net (``_refetch_missing_records``) sees it.
        """
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if acked and committed is not None:
            first_acked = min(acked)
            if first_acked > committed and not self._gap_covers(tp, committed, first_acked):
                return None
        return super()._new_offset(tp)

    def _gap_covers(self, tp: TP, start: int, end: int) -> bool:
        """Whether the known gaps of ``tp`` hold every offset of ``[start, end)``."""
        covered_until = start
        for interval in sorted(self._gap[tp].overlap(start, end), key=lambda interval: interval.begin):
            if interval.begin > covered_until:
                return False
            covered_until = max(covered_until, interval.end)
        return covered_until >= end

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's record of offsets ``offset_from..offset_to`` that hold no record (so they count as acknowledged),
        clipped at the committed offset, the next to read, not one past it as Faust clips it (see ``_new_offset``)."""
        committed = self._committed_offset[tp]
        if committed is not None:
            offset_from = max(offset_from, committed)
        if offset_from <= offset_to:
            gaps = self._gap[tp]
            gaps.addi(offset_from, offset_to + 1)  # intervals exclude their end
            await asyncio.sleep(0)
            gaps.merge_overlaps()

    def ack_batch(self, messages: Sequence[BatchRecord | Message]) -> None:
        """``Consumer.ack`` for each of a batch's records (which were never tracked as in flight), under one
        acquisition of Faust's ack lock instead of one per record."""
        acks_enabled_for = self.app.topics.acks_enabled_for
        with ack_lock:
            committed_offsets, acked_index, acked = self._committed_offset, self._acked_index, self._acked
            count = 0
            for message in messages:
                if message.acked:
                    continue
                message.acked = True
                tp, offset = message.tp, message.offset
                if not acks_enabled_for(message.topic):
                    continue
                committed = committed_offsets[tp]
                if committed is None or offset >= committed:
                    index = acked_index[tp]
                    if offset not in index:
                        index.add(offset)
                        acked[tp].append(offset)
                        count += 1
            self._n_acked += count
            notify(self._waiting_for_ack)

    async def _drain_messages(self, fetcher: Fetcher) -> None:  # the loop of Faust's, batch topics aside
        batch_topics = batch_topics_of(self.app)
        callback = self.callback
        read_offset = self._read_offset
        seeks = self._seeks
        acks_enabled_for = self.app.topics.acks_enabled_for
        monitor = self.app.monitor
        try:
            while not (self.should_stop or fetcher.should_stop):
                await self.sleep(0)  # before the fetch, as Faust's: between it and the flow check, nothing may run
                records, active_partitions = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:  # fetched across a rebalance: start again from the committed offsets
                    await self._seek_to_committed_while_stopped()
                    continue
                seeks_before = records.seeks_before
                generation_id = self.app.consumer_generation_id
                for tp, partition_records in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation_id:
                        break
                    if not (active_partitions is None or tp in active_partitions
                            or tp in self._buffered_partitions):
                        continue
                    if tp in self._awaiting_seek:  # fetched across the assignment: the recovery's seek fetches again
                        continue
                    if seeks.fetched_before_a_seek(tp, seeks_before):
                        self.log.info("%s: %d record(s) fetched before a seek of the partition dropped, the seek "
                                      "fetches them again", tp, len(partition_records))
                        continue
                    restart = seeks.restart_from(tp)
                    if restart is not None:
                        read_offset[tp] = restart.read_offset
                    if monitor is not None:
                        monitor.track_tp_end_offset(tp, self.highwater(tp))
                    target = batch_topics.get(tp.topic)
                    if target is None:
                        await self._deliver_one_by_one(tp, partition_records, callback, seeks_before)
                        continue
                    last = read_offset[tp]
                    messages = []
                    gaps = []
                    for record in partition_records:
                        if last is None or record.offset >= last:
                            if last is not None and record.offset - last > 1 and acks_enabled_for(tp.topic):
                                gaps.append((last + 1, record.offset))
                            messages.append(BatchRecord(tp, record.offset, record.timestamp, record.key,
                                                        record.value, record.headers))
                            last = record.offset
                    if messages:  # read offset and buffer in one step with the seek check: no seek comes between
                        read_offset[tp] = last
                        await target.put(messages)
                    for gap_from, gap_to in gaps:
                        await self._add_gap(tp, gap_from, gap_to)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> FetchedRecords:
        """Faust's fetch in the consumer's thread, its records tagged there with the number of seeks before it."""
        thread, seeks = self._thread, self._seeks
        consumer = thread._ensure_consumer()
        if self._awaiting_seek and active_partitions is not None:
            active_partitions = active_partitions - self._awaiting_seek
            if not active_partitions:  # none to fetch (aiokafka would take an empty set for all of them)
                await asyncio.sleep(min(timeout, 0.05))
                return FetchedRecords({}, seeks.seeks_so_far)

        async def fetch_in_thread() -> FetchedRecords:
            records = await thread._fetch_records(consumer, active_partitions, timeout=timeout,
                                                  max_records=consumer._max_poll_records)
            return FetchedRecords(records, seeks.seeks_so_far)  # the same step as the fetch returned

        return await thread.call_thread(fetch_in_thread)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Faust's, with every assigned stream partition held back (not fetched) until the seek that ends the
        table recovery (``perform_seek``).

        Faust marks the assigned partitions active at once and resumes the fetch flow during the recovery, to read
        the changelogs: a newly assigned stream partition was fetched meanwhile, and its batches applied to tables
        still being recovered. And the recovery resumes the stream partitions just before it seeks them to their
        committed offsets: a partition kept across the rebalance was read on from its position, past records not
        committed yet, which the seek then fetched again and which were applied after later ones (the roster took
        them for late events: the e2e test saw agent versions behind). Held back, a partition's prefetched records
        stay in aiokafka's buffer, which its seek discards.
        """
        self._awaiting_seek = {tp for tp in assigned if not self._is_changelog_tp(tp)}
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition to its committed offset (the end of a table recovery); the
        stream partitions held back since the assignment are fetched from there on."""
        await self._seek_all_to_committed()
        self._awaiting_seek = set()

    async def _seek_all_to_committed(self) -> None:
        """Every assigned partition to its committed offset, each seek recorded in the seek ledger; the read
        offsets are set by the drain loop from the ledger (Faust sets them here, which a fetch handled meanwhile
        would overwrite).

        The committed offsets are read one partition at a time, with awaits in between, while the worker goes on.
        An offset read before a commit made meanwhile is older than the commit; Faust stored it anyway, and the
        worker's committed offset went back behind records already acknowledged and committed, which are not
        acknowledged again when the seek fetches them again (below the committed offset then): the partition's
        commits stopped there for good. That happened at the end of recoveries, before stream partitions were held
        back until this seek (``on_partitions_assigned``): the safety net's firings in the e2e test. A committed
        offset only moves forward here; the seek itself may go back, to records fetched again and applied again,
        which the stages turn into no-ops.
        """
        committed = await self.seek_to_committed()
        known = self._committed_offset
        for tp, offset in committed.items():
            if offset is None:
                continue
            tp = ensure_TP(tp)
            read = offset or None  # 0: nothing committed
            current = known.get(tp)
            if current is None or (read is not None and read > current):
                known[tp] = read

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek of every assigned partition to its committed offset (before the flow resumes after a
        rebalance, and after records arrived while it was stopped), also for stream partitions that have no
        committed offset yet: those go back to their beginning, as the consumer's ``earliest`` reset does.

        aiokafka's ``seek_to_committed`` leaves such a partition where its fetcher is: records fetched there and
        dropped (across a rebalance, or while the flow was stopped) would never be fetched again, and the first
        offset acknowledged after them would be committed past them (Faust commits from the lowest acknowledged
        offset when nothing was committed before). It happened to the first records of a new group's
        partitions, in the e2e test. Changelog partitions keep the positions the table recovery gave them.
        """
        stream_partitions = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
        thread = self._thread
        return await thread.call_thread(_seek_to_committed_or_beginning, thread._ensure_consumer(),
                                        stream_partitions, self._seeks)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        """Faust's seek of some partitions (the table recovery's), recorded in the seek ledger; waits until
        aiokafka knows their positions."""
        thread = self._thread
        await thread.call_thread(_seek_and_wait, thread._ensure_consumer(), partitions, self._seeks,
                                 self.app.conf.broker_request_timeout)

    async def seek(self, partition: TP, offset: int) -> None:
        """Faust's seek of one partition, through the seek ledger."""
        await self.seek_wait({ensure_TP(partition): offset})

    async def _seek_to_committed_while_stopped(self) -> None:
        """Faust's seek back after records arrived while the flow was stopped (a rebalance), which may fail when the
        assignment changed while aiokafka looked up the committed offsets. The rebalance then under way ends with a
        seek of every assigned partition before the flow resumes (Faust's recovery), so the warning is enough."""
        try:
            await self._seek_all_to_committed()  # the partitions held back stay so until the recovery's seek
        except KafkaError as exc:  # IllegalStateError: a partition no longer assigned
            self.log.warning("seek to the committed offsets after a rebalance failed, the rebalance under way "
                             "seeks again: %r", exc)

    async def _deliver_one_by_one(self, tp: TP, partition_records: list[Any], callback: Any,
                                  seeks_before: int) -> None:
        """Faust's own path for a topic no batch stage reads (the tables' changelogs, in recovery), up to a seek
        of the partition made meanwhile."""
        for record in partition_records:
            if self._seeks.fetched_before_a_seek(tp, seeks_before):
                return
            r_offset = self._read_offset[tp]
            if r_offset is None or record.offset >= r_offset:
                gap = record.offset - (r_offset or 0)
                if gap > 1 and r_offset and self.app.topics.acks_enabled_for(tp.topic):
                    await self._add_gap(tp, r_offset + 1, record.offset)
                await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
                self._read_offset[tp] = record.offset


async def _seek_to_committed_or_beginning(consumer: AIOKafkaConsumer, stream_partitions: set[TP],
                                          seeks: SeekLedger) -> dict[Any, Any]:
    """In the consumer's thread: every assigned partition to its committed offset; stream partitions with none
    (or 0, which aiokafka does not seek to either) to their beginning. Each seek is recorded in ``seeks`` in the
    step it is made; a partition no longer assigned by then is left out (the rebalance under way seeks again).

    The beginning is looked up (one ListOffsets request) and sought to at once, not through aiokafka's
    ``seek_to_beginning``, which waits for its fetcher to reset the position (up to the request timeout) while
    this seek holds up the worker's fetch loop.
    """
    committed = {}
    for tp in consumer.assignment():  # as aiokafka's seek_to_committed, which seeks each in turn too
        offset = await consumer.committed(tp)
        if tp not in consumer.assignment():
            continue
        committed[tp] = offset
        if offset and offset > 0:
            consumer.seek(tp, offset)
            seeks.sought(tp, offset)
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp in stream_partitions]
    if uncommitted:
        for tp, offset in (await consumer.beginning_offsets(uncommitted)).items():
            if tp in consumer.assignment():
                consumer.seek(tp, offset)
                seeks.sought(tp, None)
    return committed


async def _seek_and_wait(consumer: AIOKafkaConsumer, partitions: Mapping[TP, int], seeks: SeekLedger,
                         timeout: float) -> None:
    """In the consumer's thread: Faust's ``seek_wait``, each seek recorded in ``seeks`` in the step it is made."""
    for tp, offset in partitions.items():
        consumer.seek(tp, offset)
        seeks.sought(tp, offset if offset > 0 else None)
    await asyncio.wait_for(asyncio.gather(*[consumer.position(tp) for tp in partitions]), timeout=timeout)
