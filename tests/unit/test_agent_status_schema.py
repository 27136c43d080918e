"""The wire schema accepts every observed variant of Dialpad's payload and names the field at fault."""

from __future__ import annotations

import json
import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AgentStatusEvent,
    SchemaError,
    decode_agent_status_event,
    decode_agent_status_payload,
    dedup_identity,
    encode,
)
from schemas.agent_status import ID_PATTERN, INVALID_ID
from tests.samples import SPEC_SAMPLE, payload


def decode(data) -> object:
    return decode_agent_status_event(json.dumps(data))


def test_spec_sample_decodes_and_normalises():
    event = decode(SPEC_SAMPLE)
    assert event.agent_id == "5728255400000000"
    assert event.target.phone_number == "+123456789"
    assert event.call_center_ids == ["5883344555555555", "6214545667777777"]
    assert event.on_duty_status == "unavailable"
    assert event.date == 1620328863056
    assert event.powerdialer_session is None


def test_normalised_event_encodes_ids_as_strings_and_phone_once():
    encoded = json.loads(encode(decode(SPEC_SAMPLE)))
    assert encoded["target"]["id"] == "5728255400000000"
    assert encoded["target"]["phone_number"] == "+123456789"
    assert "phone" not in encoded["target"]
    # and it decodes again to the same event
    assert decode(encoded) == decode(SPEC_SAMPLE)


@pytest.mark.parametrize("target_id", [5728255400000000, "5728255400000000"])
def test_target_id_as_number_or_string(target_id):
    assert decode(payload(target={"id": target_id})).agent_id == "5728255400000000"


def test_id_above_2_pow_53_stays_exact():
    big = 2**53 + 1
    assert decode(payload(target={"id": big})).agent_id == str(big)


def test_phone_number_field_from_the_field_table():
    data = payload()
    del data["target"]["phone"]
    data["target"]["phone_number"] = "+15550001"
    assert decode(data).target.phone_number == "+15550001"


def test_phone_number_wins_over_phone_when_both_sent():
    event = decode(payload(target={"phone_number": "+1555", "phone": "+1666"}))
    assert event.target.phone_number == "+1555"


@pytest.mark.parametrize("status", ["available", "unavailable", "occupied", "wrapup", "busy", "meeting-new-value"])
def test_every_status_kept_including_unknown(status):
    assert decode(payload(on_duty_status=status)).on_duty_status == status


def test_numeric_call_center_ids_exposed_as_strings():
    assert decode(payload(call_center_ids=[1234, "5678"])).call_center_ids == ["1234", "5678"]


def test_unknown_fields_tolerated():
    assert decode(payload(new_field_from_dialpad={"x": 1})).agent_id == "5728255400000000"


@pytest.mark.parametrize("reason_fields", [{"on_duty_status_reason": ""}, {}])
def test_reason_empty_or_absent(reason_fields):
    data = payload()
    del data["on_duty_status_reason"]
    data.update(reason_fields)
    assert decode(data).on_duty_status_reason in ("", None)


@pytest.mark.parametrize(
    "data, path, words",
    [
        (payload(date="1620328863056"), "$.date", "Expected `int`"),
        (payload(date=-5), "$.date", ">= 0"),
        (payload(date=2**63), "$.date", "<= 9223372036854775807"),  # beyond int64: no Kafka timestamp, no consumer
        (payload(call_center_ids="5883"), "$.call_center_ids", "Expected `array`"),
        (payload(on_duty_status=3), "$.on_duty_status", "Expected `str`"),
        (payload(target={"id": 1.5}), "$.target.id", "got `float`"),
        (payload(powerdialer_mode="yes"), "$.powerdialer_mode", "Expected `bool"),
        ({k: v for k, v in SPEC_SAMPLE.items() if k != "date"}, "$", "missing required field `date`"),
        ({k: v for k, v in SPEC_SAMPLE.items() if k != "target"}, "$", "missing required field `target`"),
        (payload(target={"id": None}), "$.target.id", "got `null`"),
        # ids are joined with '#' and ':' into the processors' table and topic keys: those characters are refused
        (payload(target={"id": "7#1"}), "$.target.id", "Expected an id of 1 to 64 characters"),
        (payload(target={"id": ""}), "$.target.id", "Expected an id of 1 to 64 characters"),
        (payload(target={"id": -7}), "$.target.id", ">= 0"),
        (payload(call_center_ids=["1", "1:2"]), "$.call_center_ids[1]", "Expected an id of 1 to 64 characters"),
        (payload(call_center_ids=[" 12"]), "$.call_center_ids[0]", "Expected an id of 1 to 64 characters"),
        # the call-center ids are checked joined with '#': a '#' inside one must not pass for a separator
        (payload(call_center_ids=["1#2"]), "$.call_center_ids[0]", "Expected an id of 1 to 64 characters"),
        (payload(call_center_ids=["1", "2#", "3"]), "$.call_center_ids[1]", "Expected an id of 1 to 64 characters"),
        (payload(call_center_ids=[7, ""]), "$.call_center_ids[1]", "Expected an id of 1 to 64 characters"),
        (payload(call_center_ids=["1", "a" * 65]), "$.call_center_ids[1]", "Expected an id of 1 to 64 characters"),
        (payload(target={"id": "7\n"}), "$.target.id", "Expected an id of 1 to 64 characters"),  # Python's `$` alone
        (payload(target={"id": "7\x9b"}), "$.target.id", "Expected an id of 1 to 64 characters"),
        (payload(target={"id": "a" * 65}), "$.target.id", "Expected an id of 1 to 64 characters"),
        # beyond a signed 64-bit integer: other languages' consumers cannot hold it, and it stopped the workers
        (payload(event_timestamp=10**20), "$.event_timestamp", "<= 9223372036854775807"),
        ([SPEC_SAMPLE], "$", "Expected `object`, got `array`"),
        ("just a string", "$", "Expected `object`, got `str`"),
    ],
)
def test_malformed_input_names_the_field(data, path, words):
    with pytest.raises(SchemaError) as caught:
        decode(data)
    assert caught.value.path == path
    assert words in caught.value.message


def test_missing_target_id_names_target():
    data = payload()
    del data["target"]["id"]
    with pytest.raises(SchemaError) as caught:
        decode(data)
    assert caught.value.path == "$.target"
    assert "`id`" in caught.value.message


def test_invalid_json_is_a_schema_error():
    with pytest.raises(SchemaError, match="invalid JSON"):
        decode_agent_status_event(b'{"target": ')


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"a":' * 5000 + b"1" + b"}" * 5000, id="deep-unknown-field"),
    pytest.param(b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep-array-in-an-unknown-field"),
])
def test_json_nested_too_deeply_is_a_schema_error(raw):
    with pytest.raises(SchemaError, match="nested too deeply"):  # msgspec raises RecursionError
        decode_agent_status_event(raw)


def test_payload_that_is_not_an_object():
    with pytest.raises(SchemaError) as caught:
        decode_agent_status_payload(["not", "an", "object"])
    assert caught.value.path == "$"


def test_dedup_identity_is_stable_and_ignores_display_fields_and_cc_order():
    base = decode(SPEC_SAMPLE)
    renamed = decode(payload(target={"name": "Nice Agent", "email": "x@y"},
                             call_center_ids=list(reversed(SPEC_SAMPLE["call_center_ids"]))))
    assert dedup_identity(base) == dedup_identity(renamed)
    assert len(dedup_identity(base)) == 32


def test_dedup_identity_is_the_same_across_versions_and_id_types():
    # identities are kept in table state and sent in the raw topic's headers: they must never change
    assert dedup_identity(decode(SPEC_SAMPLE)) == "8a414257e82263b77824dd816bfecc52"
    numeric = decode(payload(call_center_ids=[int(cc) for cc in SPEC_SAMPLE["call_center_ids"]]))
    assert dedup_identity(numeric) == dedup_identity(decode(SPEC_SAMPLE))


@pytest.mark.parametrize(
    "change",
    [
        {"date": SPEC_SAMPLE["date"] + 1},
        {"on_duty_status": "available"},
        {"call_center_ids": ["5883344555555555"]},
        {"on_duty_status_reason": "lunch"},
        {"target": {"id": 1}},
        {"event_timestamp": 1620328863334},
        {"availability_status": "available"},
    ],
)
def test_dedup_identity_differs_for_a_different_change(change):
    assert dedup_identity(decode(SPEC_SAMPLE)) != dedup_identity(decode(payload(**change)))


# ----- the id rule: checked in __post_init__ (all call-center ids in one match), as the JSON Schema states it ----

_STATED_PATTERN = re.compile(ID_PATTERN)
_ids = st.lists(st.one_of(st.text(alphabet=st.sampled_from("0123456789ab#: \n\t\x00\x1f\x7f\x9f\xa0é"), max_size=70),
                          st.integers(min_value=0, max_value=2**63 - 1)), max_size=4)


@settings(max_examples=400, deadline=None)
@given(call_center_ids=_ids, target_id=st.one_of(st.text(max_size=66), st.integers(min_value=0, max_value=2**63 - 1)))
def test_ids_are_accepted_exactly_when_the_json_schemas_pattern_matches(call_center_ids, target_id):
    """What a consumer validating against the exported JSON Schema accepts, the decoder accepts, and the first
    id that breaks the pattern is the one named (the target's before the call centers', as they are decoded)."""
    data = payload(target={"id": target_id}, call_center_ids=call_center_ids)
    ids = [("$.target.id", target_id)] + [(f"$.call_center_ids[{i}]", c) for i, c in enumerate(call_center_ids)]
    broken = [path for path, value in ids if isinstance(value, str) and not _STATED_PATTERN.search(value)]
    for decoder in (decode, decode_agent_status_payload):
        if not broken:
            event = decoder(data)
            assert event.call_center_ids == [str(c) for c in call_center_ids]
            assert event.agent_id == str(target_id)
        else:
            with pytest.raises(SchemaError) as caught:
                decoder(data)
            assert (caught.value.path, caught.value.message) == (broken[0], INVALID_ID)


@pytest.mark.parametrize("call_center_ids, target_id, path", [
    (["5883344555555555"], "57#2", "$.target.id"),
    (["5883344555555555", "a b"], "5728255400000000", "$.call_center_ids[1]"),
])
def test_decoding_with_msgspec_directly_refuses_a_broken_id_as_msgspec_refuses_any_field(call_center_ids, target_id,
                                                                                      path):
    """A consumer that decodes with msgspec and our Structs, without the package's functions, gets msgspec's
    ``ValidationError`` in msgspec's words, naming the id's path."""
    data = payload(target={"id": target_id}, call_center_ids=call_center_ids)
    for decode_directly in (lambda: msgspec.json.decode(json.dumps(data), type=AgentStatusEvent),
                            lambda: msgspec.convert(data, AgentStatusEvent)):
        with pytest.raises(msgspec.ValidationError) as caught:
            decode_directly()
        assert str(caught.value) == f"{INVALID_ID} - at `{path}`"
