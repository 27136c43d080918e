"""Table values read back from a changelog (a worker recovering its tables), on a worker app that is never started."""

from __future__ import annotations

import msgspec
import pytest

from processors.app import create_app
from processors.faust_io import IncompatibleTableState
from processors.settings import ProcessorSettings
from processors.internal_codec import encode_internal
from processors.time_in_status import AgentTimeline, OpenWindow
from schemas import encode


@pytest.fixture(scope="module")
def tables():
    return create_app(ProcessorSettings(app_id="table-state-test")).tables


def _timeline() -> AgentTimeline:
    window = OpenWindow(900_000, 0, {'["available",null,"available",["7"]]': 1_000}, {'["available",true,["7"]]': 1})
    return AgentTimeline("42", seq=3, counted_until_ms=1_000, closed_until_ms={900_000: 0},
                         open_windows={"900000:0": window})


def test_a_changelog_value_decodes_into_the_tables_struct(tables):
    timeline = _timeline()
    assert encode_internal(timeline)[0] not in b"{[", "changelogs are MessagePack"
    decoded = tables["tis-agents"]._to_value(encode_internal(timeline))
    assert decoded == timeline
    assert isinstance(next(iter(decoded.closed_until_ms)), int)
    assert tables["tis-agents"]._to_value(None) is None


def test_a_changelog_written_as_json_by_an_earlier_version_is_still_read(tables):
    timeline = _timeline()
    assert tables["tis-agents"]._to_value(encode(timeline)) == timeline
    assert tables["tis-agents"]._to_value(b" " + encode(timeline)) == timeline



def test_a_value_written_by_an_incompatible_version_is_a_clear_error(tables):
    # open windows as versions before 2026-11-30 kept them: the agent's totals, then each call center's
    old = b'{"agent_id":"42","open_windows":{"900000:0":[900000,0,{"ms_by_status":{"available":5}},{}]}}'
    expected = r"table tis-agents: .*\$\.open_windows.*new ONDUTY_PROCESSOR_APP_ID"
    with pytest.raises(IncompatibleTableState, match=expected):
        tables["tis-agents"]._to_value(old)
    with pytest.raises(IncompatibleTableState, match=expected):
        tables["tis-agents"]._to_value(msgspec.msgpack.encode(msgspec.json.decode(old)))
    with pytest.raises(IncompatibleTableState, match=r"table tis-agents: .*new ONDUTY_PROCESSOR_APP_ID"):
        tables["tis-agents"]._to_value(b"\xc1 not a value")
