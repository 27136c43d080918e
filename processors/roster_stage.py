"""Faust wiring of the on-duty roster: an agent-keyed handler and a call-center-keyed stage.

raw events (key agent id) --AgentRoster.handle_raw_batch--> agent-state table, onduty.agent-state.v1,
                                                roster-changes topic (re-keyed by call center id)
roster-changes (key call center id) --apply_roster_changes--> callcenter-roster table,
                                                onduty.callcenter-agents.v1, onduty.callcenter-summary.v1

The rules live in ``agent_state.py`` and ``callcenter_roster.py``; this module only calls them, writes tables
and sends. Within a batch, each table key is written once and each compacted output key is sent once (its
latest value): consumers of compacted topics see the same final state, with far fewer records under load.
The re-key topic carries one record per call center per batch, holding that batch's changes for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import faust
import msgspec

from processors.agent_state import AgentState, Outcome, apply_event
from processors.callcenter_roster import CallCenterRoster, ChangeOutcome, apply_change, summarize
from processors.dead_letters import DeadLetterSender
from processors.faust_io import TableCodec, byte_table, output_topic, raw_topic, send_record
from processors.raw_events import RawEvent
from processors.settings import ProcessorSettings
from schemas import SchemaError, encode
from schemas import topics as t
from schemas.roster import AgentStateRecord, CallCenterAgentRecord, RosterChange

log = logging.getLogger(__name__)

_agent_states = TableCodec(AgentState)
_rosters = TableCodec(CallCenterRoster)
_changes_decoder = msgspec.json.Decoder(list[RosterChange])


@dataclass
class RosterStage:
    """The agent-keyed half of the roster (a raw batch handler) and both tables, for the query views."""

    app: faust.App
    agent_table: faust.Table
    roster_table: faust.Table
    changes_topic: str

    def agent_state(self, agent_id: str) -> AgentState | None:
        return _agent_states.get(self.agent_table, agent_id)

    def roster(self, call_center_id: str) -> CallCenterRoster | None:
        return _rosters.get(self.roster_table, call_center_id)

    async def handle_raw_batch(self, batch: Sequence[RawEvent]) -> None:
        states: dict[str, AgentState | None] = {}
        records: dict[str, AgentStateRecord] = {}
        changes: dict[str, dict[str, RosterChange]] = {}
        for raw in batch:
            agent_id = raw.event.agent_id
            if agent_id not in states:
                states[agent_id] = self.agent_state(agent_id)
            step = apply_event(states[agent_id], raw.event, raw.dedup_id, raw.offset)
            if step.outcome is Outcome.DUPLICATE:
                continue
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
    roster_table = byte_table(app, "callcenter-roster", partitions, "On-duty roster of each call center")

    @app.agent(changes, name="apply-roster-changes")
    async def apply_roster_changes(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            rosters: dict[str, CallCenterRoster | None] = {}
            entries: dict[str, tuple[CallCenterAgentRecord | None, int]] = {}
            touched: set[str] = set()
            for event in events:
                try:
                    batch = _changes_decoder.decode(event.message.value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    await dead_letters.send(event.message, SchemaError.from_validation(exc))
                    continue
                for change in batch:
                    cc = change.call_center_id
                    if cc not in rosters:
                        rosters[cc] = _rosters.get(roster_table, cc)
                    step = apply_change(rosters[cc], change)
                    if step.outcome is not ChangeOutcome.STALE:
                        rosters[cc] = step.roster
                        entries[step.entry_key] = (step.entry, change.date_ms)
                        touched.add(cc)
            for cc in touched:
                roster = rosters[cc]
                assert roster is not None
                _rosters.put(roster_table, cc, roster)
            for key, (entry, date_ms) in entries.items():
                await send_record(app, t.CALLCENTER_AGENTS, key, entry, date_ms)
            for cc in touched:
                roster = rosters[cc]
                await send_record(app, t.CALLCENTER_SUMMARY, cc, summarize(roster), roster.as_of_ms)

    return RosterStage(app, agent_table, roster_table, changes.get_topic_name())
