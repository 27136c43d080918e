"""Faust wiring of the on-duty roster: an agent-keyed handler and a call-center-keyed stage.

raw events (key agent id) --RosterStage.handle_raw_batch--> agent-state table, onduty.agent-state.v1,
                                                roster-changes topic (re-keyed by call center id)
roster-changes (key call center id) --apply_roster_changes--> callcenter-agents and callcenter-summary tables,
                                                onduty.callcenter-agents.v1, onduty.callcenter-summary.v1

The rules live in ``agent_state.py`` and ``callcenter_roster.py``; this module only calls them, writes tables
and queues records on the batch's ``Outbox`` (records delivered before the tables' changelog records). Within a
batch, each table key is written once and each compacted output key is sent once (its latest value): consumers
of compacted topics see the same final state, with far fewer records under load. The re-key topic carries one
record per call center per batch, holding that batch's changes for it, so the call-center stage handles few
records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import faust
import msgspec

from processors.agent_state import AgentState, AgentStep, Outcome, apply_event
from processors.callcenter_roster import (
    ChangeOutcome,
    Membership,
    SummaryCounts,
    apply_change,
    empty_summary,
    entry_key,
)
from processors.batches import BatchRecord, batch_agent
from processors.dead_letters import DeadLetterSender
from processors.faust_io import (
    StructTable,
    struct_table,
    output_topic,
    raw_topic,
)
from processors.internal_codec import InternalDecoder, encode_internal
from processors.outbox import Outbox
from processors.raw_events import RawEvent
from processors.settings import ProcessorSettings
from schemas import SchemaError, encode
from schemas import topics as t
from schemas.roster import CallCenterAgentRecord, CallCenterSummaryRecord, RosterChange

log = logging.getLogger(__name__)



def membership_key(call_center_id: str, agent_id: str) -> str:
    """Key of the membership table: ``<call center>#<agent>``, partitioned by the call center."""
    return f"{call_center_id}#{agent_id}"

_changes_decoder = InternalDecoder(list[RosterChange])


@dataclass
class RosterStage:
    """The agent-keyed half of the roster (a raw batch handler) and both tables, for the query views."""

    agent_table: StructTable
    membership_table: StructTable
    summary_table: StructTable
    changes_topic: str
    dead_letters: DeadLetterSender

    def agent_state(self, agent_id: str) -> AgentState | None:
        return self.agent_table.lookup(agent_id)

    def summary(self, call_center_id: str) -> CallCenterSummaryRecord | None:
        return self.summary_table.lookup(call_center_id)

    def memberships_of(self, call_center_id: str) -> dict[str, Membership]:
        """The call center's memberships held by this worker (the owner of the call center's partition)."""
        prefix = membership_key(call_center_id, "").encode()
        return {key.decode(): membership
                for key, membership in self.membership_table.data.items() if key.startswith(prefix)}

    def on_duty_agents(self, call_center_id: str) -> list[CallCenterAgentRecord]:
        found = [m.entry for m in self.memberships_of(call_center_id).values() if m.entry is not None]
        return sorted(found, key=lambda e: e.agent_id)

    def apply_changes(self, messages: Sequence[BatchRecord], outbox: Outbox) -> None:
        """Apply a batch of re-key records: write every table key once, queue what changed."""
        memberships: dict[str, Membership | None] = {}
        summaries: dict[str, SummaryCounts] = {}
        entries: dict[str, tuple[CallCenterAgentRecord | None, int]] = {}
        for message in messages:
            try:
                changes = _changes_decoder.decode(message.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.dead_letters.send(outbox, message, SchemaError.from_validation(exc))
                continue
            for change in changes:
                cc = change.call_center_id
                key = membership_key(cc, change.agent_id)
                if key not in memberships:
                    memberships[key] = self.membership_table.lookup(key)
                before = memberships[key]
                step = apply_change(before, change)
                if step.outcome is ChangeOutcome.STALE:
                    continue
                assert step.membership is not None
                counts = summaries.get(cc)
                if counts is None:
                    counts = summaries[cc] = SummaryCounts(self.summary(cc) or empty_summary(cc))
                if step.outcome is ChangeOutcome.APPLIED:
                    memberships[key] = step.membership
                    old_entry = before.entry if before is not None else None
                    counts.apply(old_entry, step.membership.entry, change.date_ms)
                else:  # REPEATED: a replay; the summary written with it may have been lost in a crash
                    memberships[key] = step.membership
                    summaries[cc] = SummaryCounts(self.recount_with(cc, memberships, change.date_ms))
                entries[entry_key(cc, change.agent_id)] = (step.membership.entry, change.date_ms)
        for key, membership in memberships.items():
            if membership is not None:
                outbox.put(self.membership_table, key, membership)
        records = {cc: counts.record() for cc, counts in summaries.items()}
        for cc, summary in records.items():
            outbox.put(self.summary_table, cc, summary)
        for key, (entry, date_ms) in entries.items():
            outbox.send(t.CALLCENTER_AGENTS, key.encode(), None if entry is None else encode(entry),
                        timestamp_ms=date_ms)
        for cc, summary in records.items():
            outbox.send(t.CALLCENTER_SUMMARY, cc.encode(), encode(summary), timestamp_ms=summary.as_of_ms)

    def recount_with(self, call_center_id: str, pending: dict[str, Membership | None],
                     as_of_ms: int) -> CallCenterSummaryRecord:
        """The call center's counts from its memberships, this batch's unwritten ones taking precedence.

        Used after a replay, when the memberships may be ahead of the summary written with them.
        """
        prefix = membership_key(call_center_id, "")
        members = self.memberships_of(call_center_id)
        members.update({key: m for key, m in pending.items() if key.startswith(prefix) and m is not None})
        counts = SummaryCounts(empty_summary(call_center_id))
        for membership in members.values():
            if membership.entry is not None:
                counts.apply(None, membership.entry, membership.entry.updated_ms)
        counts.as_of_ms = max(counts.as_of_ms, as_of_ms)
        return counts.record()

    def handle_raw_batch(self, batch: Sequence[RawEvent], outbox: Outbox) -> None:
        states: dict[str, AgentState | None] = {}
        records: dict[str, AgentStep] = {}  # agent id -> its latest step with an agent-state record to send
        # call center id -> agent id -> the agent's latest step with a change for it, and the kind (joined or not)
        changes: dict[str, dict[str, tuple[AgentStep, bool]]] = {}
        now_ms = int(time.time() * 1000)
        for raw in batch:
            agent_id = raw.agent_id
            if agent_id not in states:
                states[agent_id] = self.agent_state(agent_id)
            step = apply_event(states[agent_id], raw.event, raw.dedup_id, raw.offset, now_ms)
            if step.outcome is Outcome.DUPLICATE:
                continue
            if step.outcome is Outcome.IMPLAUSIBLE:
                log.warning("implausible date %d for agent %s: not applied to the roster", raw.event.date, agent_id)
            if step.outcome is Outcome.LATE:
                log.info("late event for agent %s at %d (current state is newer)", agent_id, raw.event.date)
            states[agent_id] = step.state
            if step.emits_agent_record:
                records[agent_id] = step
            for cc, joined in step.change_kinds():  # the agent's latest change per call center supersedes earlier ones
                by_agent = changes.get(cc)
                if by_agent is None:
                    by_agent = changes[cc] = {}
                by_agent[agent_id] = (step, joined)
        for agent_id, state in states.items():
            if state is not None:
                outbox.put(self.agent_table, agent_id, state)
        for agent_id, step in records.items():
            record = step.agent_record
            assert record is not None
            outbox.send(t.AGENT_STATE, agent_id.encode(), encode(record), timestamp_ms=record.updated_ms)
        for call_center_id, by_agent in changes.items():
            batch = [step.change(call_center_id, joined) for step, joined in by_agent.values()]
            outbox.send(self.changes_topic, call_center_id.encode(), encode_internal(batch))


def register(app: faust.App, settings: ProcessorSettings, dead_letters: DeadLetterSender) -> RosterStage:
    partitions = settings.partitions
    specs = {spec.name: spec for spec in t.pipeline_topics(settings.raw_topic, partitions)}
    changes = raw_topic(app, f"{settings.app_id}-roster-changes", partitions, internal=True)
    for name in (t.AGENT_STATE, t.CALLCENTER_AGENTS, t.CALLCENTER_SUMMARY):
        output_topic(app, specs[name])
    agent_table = struct_table(app, "agent-state", AgentState, partitions, "Roster state of each agent, by agent id")
    # Keyed <call center>#<agent>, partitioned by the call center: co-partitioned with the re-key topic.
    membership_table = struct_table(app, "callcenter-agents", Membership, partitions,
                                    "Membership of each agent in each call center, by <call center>#<agent>",
                                    prefixed=True)
    summary_table = struct_table(app, "callcenter-summary", CallCenterSummaryRecord, partitions,
                                 "On-duty counts of each call center")
    stage = RosterStage(agent_table, membership_table, summary_table, changes.get_topic_name(), dead_letters)

    batch_agent(app, changes, settings)(stage.apply_changes)

    return stage
