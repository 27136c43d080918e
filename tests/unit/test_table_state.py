"""Table values read back from a changelog (a worker recovering its tables), on a worker app that is never started."""

from __future__ import annotations

import pytest

from processors.app import create_app
from processors.faust_io import IncompatibleTableState
from processors.settings import ProcessorSettings
from processors.time_in_status import AgentTimeline, OpenWindow
from schemas import encode


@pytest.fixture(scope="module")
def tables():
    return create_app(ProcessorSettings(app_id="table-state-test")).tables


def test_a_changelog_value_decodes_into_the_tables_struct(tables):
    window = OpenWindow(900_000, 0, {'["available",null,"available",["7"]]': 1_000}, {'["available",true,["7"]]': 1})
    timeline = AgentTimeline("42", seq=3, counted_until_ms=1_000, open_windows={"900000:0": window})
    assert tables["tis-agents"]._to_value(encode(timeline)) == timeline
    assert tables["tis-agents"]._to_value(None) is None


def test_a_value_written_by_an_incompatible_version_is_a_clear_error(tables):
    # open windows as versions before 2026-11-30 kept them: the agent's totals, then each call center's
    old = b'{"agent_id":"42","open_windows":{"900000:0":[900000,0,{"ms_by_status":{"available":5}},{}]}}'
    expected = r"table tis-agents: .*\$\.open_windows.*new ONDUTY_PROCESSOR_APP_ID"
    with pytest.raises(IncompatibleTableState, match=expected):
        tables["tis-agents"]._to_value(old)
