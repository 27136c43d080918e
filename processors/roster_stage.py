"""Faust wiring of the on-duty roster: an agent-keyed handler and a call-center-keyed stage.

raw events (key agent id) --RosterStage.handle_raw_batch--> agent-state table, onduty.agent-state.v1,
                                                roster-changes topic (re-keyed by call center id)
roster-changes (key call center id) --apply_roster_changes--> callcenter-agents and callcenter-summary tables,
                                                onduty.callcenter-agents.v1, onduty.callcenter-summary.v1

The rules live in ``agent_state.py`` and ``callcenter_roster.py``; this module only calls them, writes tables
and sends. Within a batch, each table key is written once and each compacted output key is sent once (its
latest value): consumers of compacted topics see the same final state, with far fewer records under load.
The re-key topic carries one record per call center per batch, holding that batch's changes for it, so the
call-center stage handles few records and can take them one at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import faust
import msgspec

from processors.agent_state import AgentState, Outcome, apply_event
from processors.callcenter_roster import (
    ChangeOutcome,
    Membership,
    apply_change,
    empty_summary,
    entry_key,
    update_summary,
)
from processors.dead_letters import DeadLetterSender
from processors.faust_io import TableCodec, byte_table, output_topic, raw_topic, send_record
from processors.raw_events import RawEvent
from processors.settings import ProcessorSettings
from schemas import SchemaError, encode
from schemas import topics as t
from schemas.roster import AgentStateRecord, CallCenterAgentRecord, CallCenterSummaryRecord, RosterChange

log = logging.getLogger(__name__)

_agent_states = TableCodec(AgentState)
_memberships = TableCodec(Membership)
_summaries = TableCodec(CallCenterSummaryRecord)
_changes_decoder = msgspec.json.Decoder(list[RosterChange])


@dataclass
class RosterStage:
    """The agent-keyed half of the roster (a raw batch handler) and both tables, for the query views."""

    app: faust.App
    agent_table: faust.Table
    membership_table: faust.Table
    summary_table: faust.Table
    changes_topic: str

    def agent_state(self, agent_id: str) -> AgentState | None:
        return _agent_states.get(self.agent_table, agent_id)

    def summary(self, call_center_id: str) -> CallCenterSummaryRecord | None:
        return _summaries.get(self.summary_table, call_center_id)

    def on_duty_agents(self, call_center_id: str) -> list[CallCenterAgentRecord]:
        """The call center's on-duty entries held by this worker (the owner of the call center's partition)."""
        prefix = entry_key(call_center_id, "").encode()
        found = []
        for key, raw in self.membership_table.items():
            if key.startswith(prefix):
                entry = _memberships.decode(raw).entry
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: e.agent_id)

    async def handle_raw_batch(self, batch: Sequence[RawEvent]) -> None:
        states: dict[str, AgentState | None] = {}
        records: dict[str, AgentStateRecord] = {}
        changes: dict[str, dict[str, RosterChange]] = {}
        now_ms = int(time.time() * 1000)
        for raw in batch:
            agent_id = raw.event.agent_id
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
            if step.agent_record is not None:
                records[agent_id] = step.agent_record
            for change in step.changes:  # the agent's latest change per call center supersedes earlier ones
                changes.setdefault(change.call_center_id, {})[agent_id] = change
        for agent_id, state in states.items():
            if state is not None:
                _agent_states.put(self.agent_table, agent_id, state)
        for agent_id, record in records.items():
            await send_record(self.app, t.AGENT_STATE, agent_id, record, record.updated_ms)
        for call_center_id, by_agent in changes.items():
            await self.app.producer.send(self.changes_topic, call_center_id.encode(),
                                         encode(list(by_agent.values())), None, None, None)


def register(app: faust.App, settings: ProcessorSettings, dead_letters: DeadLetterSender) -> RosterStage:
    partitions = settings.partitions
    specs = {spec.name: spec for spec in t.pipeline_topics(settings.raw_topic, partitions)}
    changes = raw_topic(app, f"{settings.app_id}-roster-changes", partitions, internal=True)
    for name in (t.AGENT_STATE, t.CALLCENTER_AGENTS, t.CALLCENTER_SUMMARY):
        output_topic(app, specs[name])
    agent_table = byte_table(app, "agent-state", partitions, "Roster state of each agent, by agent id")
    # Written while handling one re-key record (one call center), so Faust's own rule -- the changelog partition
    # is the current event's partition -- keeps ``<cc>:<agent>`` entries with their call center.
    membership_table = byte_table(app, "callcenter-agents", partitions, "Membership of each agent in each call "
                                  "center, by <call center>:<agent>", use_partitioner=False)
    summary_table = byte_table(app, "callcenter-summary", partitions, "On-duty counts of each call center",
                               use_partitioner=False)

    @app.agent(changes, name="apply-roster-changes")
    async def apply_roster_changes(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                batch = _changes_decoder.decode(event.message.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await dead_letters.send(event.message, SchemaError.from_validation(exc))
                continue
            summaries: dict[str, CallCenterSummaryRecord] = {}
            for change in batch:
                cc = change.call_center_id
                key = entry_key(cc, change.agent_id)
                before = _memberships.get(membership_table, key)
                step = apply_change(before, change)
                if step.outcome is ChangeOutcome.STALE:
                    continue
                assert step.membership is not None
                if cc not in summaries:
                    summaries[cc] = _summaries.get(summary_table, cc) or empty_summary(cc)
                if step.outcome is ChangeOutcome.APPLIED:
                    _memberships.put(membership_table, key, step.membership)
                    old_entry = before.entry if before is not None else None
                    summaries[cc] = update_summary(summaries[cc], old_entry, step.membership.entry, change.date_ms)
                await send_record(app, t.CALLCENTER_AGENTS, key, step.membership.entry, change.date_ms)
            for cc, summary in summaries.items():
                _summaries.put(summary_table, cc, summary)
                await send_record(app, t.CALLCENTER_SUMMARY, cc, summary, summary.as_of_ms)

    return RosterStage(app, agent_table, membership_table, summary_table, changes.get_topic_name())
