"""The bodies of one event-loop iteration are prepared together, each with its own outcome, in order."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from ingest.errors import InvalidEvent, VerificationError
from ingest.intake import Intake, Prepared
from ingest.verification import TokenVerifier
from schemas import decode_agent_status_event
from tests.samples import payload

SECRET = "intake-test-secret-0123456789abcdef0123"


def signed(claims: dict, secret: str = SECRET) -> bytes:
    return jwt.encode(claims, secret, algorithm="HS256").encode()


def intake(verifier: TokenVerifier | None = None) -> Intake:
    return Intake(verifier or TokenVerifier([SECRET]), "raw", "rejected")


async def test_the_bodies_of_one_iteration_are_prepared_in_one_pass_in_order(monkeypatch):
    subject = intake()
    passes = []
    prepare = subject.prepare_waiting
    monkeypatch.setattr(subject, "prepare_waiting", lambda: (passes.append(len(subject._waiting)), prepare()))
    bodies = [signed(payload(target={"id": 100 + i})) for i in range(5)]
    futures = [subject.submit(body, 1_700_000_000_000 + i) for i, body in enumerate(bodies)]
    assert not any(f.done() for f in futures)  # not before the iteration's requests were all read

    prepared = await asyncio.gather(*futures)
    assert passes == [5]
    assert [p.record.key for p in prepared] == [b"%d" % (100 + i) for i in range(5)]
    assert [p.record.received_ms for p in prepared] == [1_700_000_000_000 + i for i in range(5)]
    assert all(p.invalid is None and p.record.topic == "raw" for p in prepared)
    assert decode_agent_status_event(prepared[0].record.value).agent_id == "100"

    later = await subject.submit(bodies[0], 1)  # a later iteration: a pass of its own
    assert passes == [5, 1] and later.record.key == b"100"


async def test_each_body_gets_its_own_outcome():
    subject = intake()
    good = subject.submit(signed(payload()), 1)
    forged = subject.submit(signed(payload(), secret="another-secret-0123456789abcdef0123456"), 2)
    invalid = subject.submit(signed(payload(on_duty_status=7)), 3)
    garbage = subject.submit(b"not a token", 4)
    await asyncio.sleep(0)

    assert good.result().invalid is None
    with pytest.raises(VerificationError) as refused:
        forged.result()
    assert refused.value.reason == "signature"
    rejected = invalid.result()  # authentic but refused by the schema: its record goes to the rejected topic
    assert isinstance(rejected, Prepared) and isinstance(rejected.invalid, InvalidEvent)
    assert (rejected.record.topic, rejected.invalid.path) == ("rejected", "$.on_duty_status")
    with pytest.raises(VerificationError) as malformed:
        garbage.result()
    assert malformed.value.reason == "malformed"


async def test_an_unexpected_failure_of_one_body_touches_no_other():
    class FlakyVerifier(TokenVerifier):
        def verify_body(self, body: bytes):
            if body == b"boom":
                raise RuntimeError("a bug")
            return super().verify_body(body)

    subject = intake(FlakyVerifier([SECRET]))
    before = subject.submit(signed(payload(target={"id": 1})), 1)
    broken = subject.submit(b"boom", 2)
    after = subject.submit(signed(payload(target={"id": 2})), 3)
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        broken.result()
    assert (before.result().record.key, after.result().record.key) == (b"1", b"2")


async def test_a_request_that_stopped_waiting_is_skipped():
    verified = []

    class CountingVerifier(TokenVerifier):
        def verify_body(self, body: bytes):
            verified.append(body)
            return super().verify_body(body)

    subject = intake(CountingVerifier([SECRET]))
    gone = subject.submit(signed(payload(target={"id": 1})), 1)
    kept = subject.submit(signed(payload(target={"id": 2})), 2)
    gone.cancel()
    assert (await kept).record.key == b"2"
    assert len(verified) == 1
