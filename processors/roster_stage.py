"""Faust wiring of the on-duty roster: an agent-keyed stage and a call-center-keyed stage.

raw topic (key agent id) --apply_agent_events--> agent-state table, onduty.agent-state.v1,
                                                 roster-changes topic (re-keyed by call center id)
roster-changes (key call center id) --apply_roster_changes--> callcenter-roster table,
                                                 onduty.callcenter-agents.v1, onduty.callcenter-summary.v1

The rules live in ``agent_state.py`` and ``callcenter_roster.py``; this module only decodes, calls them, writes
tables (each key once per batch) and sends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust
import msgspec

from processors.agent_state import AgentState, Outcome, apply_event
from processors.callcenter_roster import CallCenterRoster, ChangeOutcome, apply_change, summarize
from processors.dead_letters import DeadLetterSender
from processors.faust_io import TableCodec, byte_table, output_topic, raw_topic, send_record
from processors.settings import ProcessorSettings
from schemas import SchemaError, decode_agent_status_event, dedup_identity, encode
from schemas import topics as t
from schemas.roster import RosterChange

log = logging.getLogger(__name__)

_agent_states = TableCodec(AgentState)
_rosters = TableCodec(CallCenterRoster)
_change_decoder = msgspec.json.Decoder(RosterChange)


@dataclass
class RosterStage:
    """What the roster stage adds to the app, for the query views and tests."""

    agent_table: faust.Table
    roster_table: faust.Table

    def agent_state(self, agent_id: str) -> AgentState | None:
        return _agent_states.get(self.agent_table, agent_id)

    def roster(self, call_center_id: str) -> CallCenterRoster | None:
        return _rosters.get(self.roster_table, call_center_id)


def register(app: faust.App, settings: ProcessorSettings, dead_letters: DeadLetterSender) -> RosterStage:
    partitions = settings.partitions
    specs = {spec.name: spec for spec in t.pipeline_topics(settings.raw_topic, partitions)}
    source = raw_topic(app, settings.raw_topic, partitions)
    changes = raw_topic(app, f"{settings.app_id}-roster-changes", partitions, internal=True)
    for name in (t.AGENT_STATE, t.CALLCENTER_AGENTS, t.CALLCENTER_SUMMARY):
        output_topic(app, specs[name])
    agent_table = byte_table(app, "agent-state", partitions, "Roster state of each agent, by agent id")
    roster_table = byte_table(app, "callcenter-roster", partitions, "On-duty roster of each call center")

    @app.agent(source, name="apply-agent-events")
    async def apply_agent_events(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            states: dict[str, AgentState | None] = {}
            for event in events:
                message = event.message
                try:
                    decoded = decode_agent_status_event(message.value)
                except SchemaError as exc:
                    await dead_letters.send(message, exc)
                    continue
                agent_id = decoded.agent_id
                if agent_id not in states:
                    states[agent_id] = _agent_states.get(agent_table, agent_id)
                step = apply_event(states[agent_id], decoded, dedup_identity(decoded), message.offset)
                if step.outcome is Outcome.DUPLICATE:
                    continue
                states[agent_id] = step.state
                if step.agent_record is not None:
                    await send_record(app, t.AGENT_STATE, agent_id, step.agent_record, decoded.date)
                for change in step.changes:
                    await app.producer.send(changes.get_topic_name(), change.call_center_id.encode(),
                                            encode(change), None, decoded.date / 1000.0, None)
                if step.outcome is Outcome.LATE:
                    log.info("late event for agent %s at %d (current state is newer)", agent_id, decoded.date)
            for agent_id, state in states.items():
                if state is not None:
                    _agent_states.put(agent_table, agent_id, state)

    @app.agent(changes, name="apply-roster-changes")
    async def apply_roster_changes(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            rosters: dict[str, CallCenterRoster | None] = {}
            touched: set[str] = set()
            for event in events:
                try:
                    change = _change_decoder.decode(event.message.value)
                except msgspec.DecodeError as exc:
                    await dead_letters.send(event.message, SchemaError.from_validation(exc))
                    continue
                cc = change.call_center_id
                if cc not in rosters:
                    rosters[cc] = _rosters.get(roster_table, cc)
                step = apply_change(rosters[cc], change)
                if step.outcome is ChangeOutcome.STALE:
                    continue
                rosters[cc] = step.roster
                touched.add(cc)
                await send_record(app, t.CALLCENTER_AGENTS, step.entry_key, step.entry, change.date_ms)
            for cc in touched:
                roster = rosters[cc]
                assert roster is not None
                _rosters.put(roster_table, cc, roster)
                await send_record(app, t.CALLCENTER_SUMMARY, cc, summarize(roster), roster.as_of_ms)

    return RosterStage(agent_table, roster_table)
