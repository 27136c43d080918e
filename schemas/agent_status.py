"""The Dialpad agent status event, as Dialpad sends it (see shared/docs/agent-status-events.md).

The Structs accept every observed variant of the payload and normalise it:

* ``target.id`` may be a JSON number or a string; it is always exposed as a string, because ids of
  this size exceed what JavaScript consumers can hold exactly.
* ``target.phone`` (sample payload) and ``target.phone_number`` (field table) are both accepted;
  the value is kept in ``phone_number``.
* ``call_center_ids`` items may be numbers or strings; they are exposed as strings.
* ``on_duty_status`` values beyond the documented ones are kept as they are.
* Unknown fields are tolerated (never ``forbid_unknown_fields`` on a wire event).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from schemas.errors import SchemaError

#: The documented values of ``on_duty_status``. Others may appear and are kept.
KNOWN_ON_DUTY_STATUSES = ("available", "unavailable", "occupied", "wrapup", "busy")

UnixMillis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1, description="Unix time in milliseconds, UTC.")]
"""Bounded to a signed 64-bit integer: what Kafka timestamps and other languages' consumers hold."""

ID_RULE = "1 to 64 characters, none of them '#', ':', whitespace or a control character"
"""What a Dialpad id given as a string must be (``DialpadId``), in words for error messages."""
INVALID_ID = f"Expected an id of {ID_RULE}, or a number"


class InvalidId(msgspec.ValidationError):
    """A string id that breaks ``ID_PATTERN``, raised by a Struct's ``__post_init__`` with the id's path in the
    event, worded as msgspec words its own errors (``... - at `$.target.id```). A ``msgspec.ValidationError``, so
    that decoding with msgspec directly raises what msgspec raises for any other invalid field (msgspec passes it
    through as it is); not a ``ValueError``, which msgspec would re-raise with the Struct's path instead of the
    id's. The decode functions turn it into a ``SchemaError`` like any other ``ValidationError``."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{INVALID_ID} - at `{path}`")


_ID_CHARACTERS = r"[^#:\s\x00-\x1f\x7f-\x9f]{1,64}"
ID_PATTERN = rf"^{_ID_CHARACTERS}$(?!\n)"
"""A Dialpad id given as a string, as the JSON Schema states it (the lookahead keeps a final newline out of ``$``)."""
_ID = re.compile(_ID_CHARACTERS)
_IDS = re.compile(rf"{_ID_CHARACTERS}(?:#{_ID_CHARACTERS})*")
"""Ids joined with '#' (itself refused in an id): all of an event's call-center ids checked in one match."""

DialpadId = (
    # The pattern is checked by the Structs' __post_init__ (one match for all call-center ids), not by msgspec
    # (one regular-expression call per id, about a third of the event's decoding): the JSON Schema states it.
    Annotated[str, msgspec.Meta(extra_json_schema={"pattern": ID_PATTERN}, description=(
        "A Dialpad id given as a string: 1 to 64 characters, none of them '#', ':', whitespace or a control "
        "character (the processors join ids with '#' and ':' into table and topic keys). The lookahead keeps "
        "Python's `$` from accepting a final newline."))]
    | Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1, description="A Dialpad id given as a number.")]
)
"""An agent or call-center id: Dialpad's are numbers (sent as JSON numbers or strings); exposed as a string."""


class AgentTarget(msgspec.Struct, omit_defaults=True):
    """The agent whose status changed (the event's ``target``)."""

    id: DialpadId
    """The agent's Dialpad user id. Accepted as a JSON number or string, always exposed as a string."""
    type: str | None = None
    """The target's type; ``user`` for an agent."""
    name: str | None = None
    """The agent's full name."""
    email: str | None = None
    """The agent's primary email."""
    phone_number: str | None = None
    """The agent's primary phone number (E.164). Filled from ``phone`` when only that is sent."""
    phone: str | None = None
    """Alias of ``phone_number`` seen in Dialpad's sample payload; folded into ``phone_number`` on decode."""

    def __post_init__(self) -> None:
        if isinstance(self.id, int):
            self.id = str(self.id)
        elif _ID.fullmatch(self.id) is None:
            raise InvalidId("$.target.id")
        if self.phone_number is None and self.phone is not None:
            self.phone_number = self.phone
        self.phone = None


class AgentStatusEvent(msgspec.Struct, omit_defaults=True):
    """One agent status change, as delivered by a Dialpad agent status webhook (normalised)."""

    target: AgentTarget
    """Which agent changed status."""
    on_duty_status: str
    """The agent's on-duty status: available, unavailable, occupied, wrapup or busy; other values are kept."""
    date: UnixMillis
    """Event time: when the agent's ``on_duty_status`` changed, unix milliseconds UTC."""
    call_center_ids: list[DialpadId]
    """The call centers the agent is currently on duty for (ids exposed as strings)."""
    availability_status: str | None = None
    """``available`` when the agent is not in DND and not in a call, otherwise ``unavailable``."""
    on_duty_status_reason: str | None = None
    """The reason the agent set when going off duty; may be empty or absent."""
    event_timestamp: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    """When Dialpad generated the webhook, unix milliseconds UTC. Not trusted for windows: it can be wrong."""
    powerdialer_mode: bool | None = None
    """Whether the agent is in power dialer mode."""
    powerdialer_session: str | None = None
    """The current autodialer session id, or null."""

    def __post_init__(self) -> None:
        ids = self.call_center_ids
        try:
            joined = "#".join(ids)
        except TypeError:  # some given as numbers: exposed as strings (a number's digits are a valid id)
            ids = self.call_center_ids = [str(c) for c in ids]
            joined = "#".join(ids)
        if ids and (joined.count("#") != len(ids) - 1 or _IDS.fullmatch(joined) is None):  # no '#' inside an id
            raise InvalidId(next(f"$.call_center_ids[{i}]" for i, id_ in enumerate(ids) if not _ID.fullmatch(id_)))

    @property
    def agent_id(self) -> str:
        """The agent's id as a string (``target.id``)."""
        return str(self.target.id)


_event_json_decoder = msgspec.json.Decoder(AgentStatusEvent)
_event_converter_type = AgentStatusEvent
_encoder = msgspec.json.Encoder()


def decode_agent_status_event(raw: bytes | str) -> AgentStatusEvent:
    """Decode a JSON document into an event; raise ``SchemaError`` naming the faulty field."""
    try:
        return _event_json_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise SchemaError.from_validation(exc) from None
    except msgspec.DecodeError as exc:
        raise SchemaError(f"invalid JSON: {exc}") from None
    except ValueError as exc:  # raised by __post_init__, msgspec does not wrap it with a path
        raise SchemaError(str(exc)) from None
    except RecursionError:  # msgspec's limit is about 1,000 levels, even inside fields it skips
        raise SchemaError(TOO_DEEP) from None


TOO_DEEP = "invalid JSON: nested too deeply (more than about 1,000 levels of arrays or objects)"
"""The reason given for a document msgspec refuses to descend into (it raises ``RecursionError``)."""


def decode_agent_status_payload(payload: Any) -> AgentStatusEvent:
    """Convert already-parsed JSON (e.g. verified JWT claims) into an event; errors name the field."""
    if not isinstance(payload, dict):
        raise SchemaError(f"Expected `object`, got `{type(payload).__name__}`", "$")
    try:
        return msgspec.convert(payload, _event_converter_type)
    except msgspec.ValidationError as exc:
        raise SchemaError.from_validation(exc) from None
    except ValueError as exc:
        raise SchemaError(str(exc)) from None


def encode(record: msgspec.Struct) -> bytes:
    """Encode any schema Struct as compact JSON (one shared encoder)."""
    return _encoder.encode(record)
