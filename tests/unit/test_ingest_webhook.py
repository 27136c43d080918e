"""The webhook through the real app factory: what Dialpad (or an attacker) sees for each kind of body.

Kafka is replaced by an in-memory publisher; everything else (verification, schema, spool, routes) is real.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest import IngestSettings, create_app
from ingest.records import DEDUP_HEADER, RECEIVED_HEADER
from ingest.testing import MemoryPublisher
from schemas import decode_agent_status_event, decode_agent_status_payload, dedup_identity
from schemas.rejected import RejectedAgentStatus
from tests.samples import SPEC_SAMPLE, payload

SECRET = "current-webhook-secret-0123456789abcdef"
ROTATED = "previous-webhook-secret-fedcba9876543210"
URL = "/webhooks/dialpad/agent-status"
RAW, REJECTED = "test.raw", "test.rejected"


def sign(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: str = SECRET) -> str:
    """A token with any header, HMAC-SHA256-signed with ``secret`` (for algorithm confusion)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def settings(tmp_path: Path) -> IngestSettings:
    return IngestSettings(webhook_secrets=(SECRET, ROTATED), raw_topic=RAW, rejected_topic=REJECTED,
                          spool_dir=tmp_path / "spool", max_body_bytes=4096, publish_deadline_ms=100)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def start_client(settings: IngestSettings, publisher: MemoryPublisher | None = None) -> TestClient:
        client = TestClient(TestServer(create_app(settings, publisher=publisher or MemoryPublisher())))
        await client.start_server()
        clients.append(client)
        return client

    yield start_client
    for client in clients:
        await client.close()


@pytest.fixture
async def kafka() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
async def client(start, settings, kafka) -> TestClient:
    return await start(settings, kafka)


async def post(client: TestClient, body: str | bytes, content_type: str = "application/jwt"):
    response = await client.post(URL, data=body, headers={"Content-Type": content_type})
    return response.status, await response.json()


# ----- signed events that must be accepted ------------------------------------------------------------------

async def test_valid_token_is_published_with_key_value_headers_and_event_time(client, kafka):
    before_ms = time.time_ns() // 1_000_000
    status, body = await post(client, sign(SPEC_SAMPLE))
    assert (status, body) == (202, {"status": "accepted", "kept_in": "kafka"})
    [record] = kafka.sent
    event = decode_agent_status_payload(SPEC_SAMPLE)
    assert record.topic == RAW
    assert record.key == b"5728255400000000"
    assert decode_agent_status_event(record.value) == event
    headers = dict(record.headers)
    assert headers[DEDUP_HEADER] == dedup_identity(event).encode()
    assert before_ms <= int(headers[RECEIVED_HEADER]) <= time.time_ns() // 1_000_000
    assert record.timestamp_ms == SPEC_SAMPLE["date"]


async def test_token_signed_with_the_second_rotated_secret_is_accepted(client, kafka):
    status, _ = await post(client, sign(SPEC_SAMPLE, ROTATED))
    assert status == 202 and len(kafka.sent) == 1


async def test_json_quoted_token_is_accepted_whatever_the_content_type(client, kafka):
    status, _ = await post(client, json.dumps(sign(SPEC_SAMPLE)), content_type="application/json")
    assert status == 202
    status, _ = await post(client, sign(SPEC_SAMPLE) + "\n", content_type="text/plain")
    assert status == 202 and len(kafka.sent) == 2


async def test_unknown_status_is_accepted_and_kept(client, kafka):
    status, _ = await post(client, sign(payload(on_duty_status="lunch")))
    assert status == 202
    assert decode_agent_status_event(kafka.sent[0].value).on_duty_status == "lunch"


@pytest.mark.parametrize("target", [{"phone": "+15550100"}, {"phone_number": "+15550100"}])
async def test_phone_and_phone_number_both_end_up_in_phone_number(client, kafka, target):
    claims = payload()
    claims["target"] = {"id": 42, "type": "user", **target}
    status, _ = await post(client, sign(claims))
    assert status == 202
    value = json.loads(kafka.sent[0].value)
    assert value["target"]["phone_number"] == "+15550100" and "phone" not in value["target"]


@pytest.mark.parametrize("agent_id", [5728255400000000, "5728255400000000"])
async def test_numeric_and_string_ids_give_the_same_string_key(client, kafka, agent_id):
    status, _ = await post(client, sign(payload(target={"id": agent_id})))
    assert status == 202
    assert kafka.sent[0].key == b"5728255400000000"
    assert json.loads(kafka.sent[0].value)["target"]["id"] == "5728255400000000"


async def test_exp_and_nbf_are_honoured_with_leeway_but_never_required(client, kafka):
    now = int(time.time())
    assert (await post(client, sign(payload(exp=now + 60, nbf=now - 60))))[0] == 202
    assert (await post(client, sign(payload(exp=now - 5))))[0] == 202  # within the 30 s leeway
    assert (await post(client, sign(payload(nbf=now + 5))))[0] == 202
    assert len(kafka.sent) == 3


# ----- refused: 401 with the reason, counted, never forwarded ------------------------------------------------

@pytest.mark.parametrize(("make_body", "reason"), [
    pytest.param(lambda: sign(SPEC_SAMPLE, "an-unknown-secret-0123456789abcdefgh"), "signature", id="wrong-secret"),
    pytest.param(lambda: jwt.encode(SPEC_SAMPLE, None, algorithm="none"), "algorithm", id="alg-none"),
    pytest.param(lambda: forge({"alg": "none", "typ": "JWT"}, SPEC_SAMPLE), "algorithm", id="alg-none-signed"),
    pytest.param(lambda: sign(SPEC_SAMPLE, algorithm="HS512"), "algorithm", id="hs512"),
    pytest.param(lambda: forge({"alg": "RS256", "typ": "JWT"}, SPEC_SAMPLE), "algorithm", id="rs256-confusion"),
    pytest.param(lambda: forge({"typ": "JWT"}, SPEC_SAMPLE), "algorithm", id="no-alg"),
    pytest.param(lambda: tamper(sign(SPEC_SAMPLE)), "signature", id="tampered-payload"),
    pytest.param(lambda: sign(payload(exp=int(time.time()) - 3600)), "expired", id="expired"),
    pytest.param(lambda: sign(payload(nbf=int(time.time()) + 3600)), "not_yet_valid", id="not-yet-valid"),
    pytest.param(lambda: sign(payload(exp="tomorrow")), "malformed", id="exp-not-a-number"),
    pytest.param(lambda: "not-a-token", "malformed", id="garbage"),
    pytest.param(lambda: sign(SPEC_SAMPLE)[:-6] + "!!!!!!", "malformed", id="bad-base64"),
    pytest.param(lambda: json.dumps("hello"), "malformed", id="quoted-garbage"),
    pytest.param(lambda: json.dumps(SPEC_SAMPLE), "unsigned", id="unsigned-json-refused"),
])
async def test_unverifiable_bodies_get_401_saying_which_failure(client, kafka, make_body, reason):
    status, body = await post(client, make_body())
    assert status == 401
    assert body["error"] == f"verification_failed:{reason}"
    assert SECRET not in json.dumps(body) and ROTATED not in json.dumps(body)
    assert kafka.sent == []  # neither the event nor a rejected record
    metrics = await (await client.get("/metrics")).text()
    assert f'onduty_ingest_verification_failures_total{{reason="{reason}"}} 1' in metrics


def tamper(token: str) -> str:
    header, claims, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims + "=="))
    forged["on_duty_status"] = "available"
    return f"{header}.{b64(json.dumps(forged).encode())}.{signature}"


async def test_secrets_never_appear_in_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    await post(client, sign(SPEC_SAMPLE, "an-unknown-secret-0123456789abcdefgh"))
    await post(client, sign(SPEC_SAMPLE))
    assert SECRET not in caplog.text and ROTATED not in caplog.text


# ----- unsigned input: only when explicitly allowed ----------------------------------------------------------

async def test_unsigned_json_is_accepted_only_when_allowed(start, settings, kafka):
    client = await start(replace(settings, allow_unsigned=True), kafka)
    status, _ = await post(client, json.dumps(SPEC_SAMPLE), content_type="application/json")
    assert status == 202 and kafka.sent[0].key == b"5728255400000000"
    assert (await post(client, sign(SPEC_SAMPLE)))[0] == 202  # signed still works


def test_service_refuses_to_start_without_a_secret_unless_unsigned_is_allowed(tmp_path):
    from ingest.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="ONDUTY_WEBHOOK_SECRETS.*ONDUTY_ALLOW_UNSIGNED=true"):
        create_app(IngestSettings(spool_dir=tmp_path))
    with pytest.raises(ConfigurationError, match="ONDUTY_WEBHOOK_SECRETS"):
        IngestSettings.from_env({})
    assert IngestSettings.from_env({"ONDUTY_ALLOW_UNSIGNED": "true"}).allow_unsigned


def test_settings_from_env_read_every_variable_and_hide_secrets():
    settings = IngestSettings.from_env({
        "ONDUTY_WEBHOOK_SECRETS": "one-secret-value, two-secret-value", "ONDUTY_INGEST_PORT": "9090",
        "ONDUTY_SPOOL_DIR": "/tmp/x", "ONDUTY_RAW_TOPIC": "raw.v9", "ONDUTY_PUBLISH_DEADLINE": "250ms",
        "ONDUTY_MAX_BODY_BYTES": "1000", "ONDUTY_SPOOL_MAX_BYTES": "5000", "ONDUTY_JWT_LEEWAY": "1m",
        "ONDUTY_KAFKA_BOOTSTRAP": "k:1",
    })
    assert settings.webhook_secrets == ("one-secret-value", "two-secret-value")
    assert (settings.port, settings.raw_topic, str(settings.spool_dir)) == (9090, "raw.v9", "/tmp/x")
    assert (settings.publish_deadline_ms, settings.max_body_bytes, settings.spool_max_bytes) == (250, 1000, 5000)
    assert (settings.jwt_leeway_s, settings.kafka_bootstrap) == (60, "k:1")
    assert "secret-value" not in repr(settings)
    assert IngestSettings(webhook_secrets=("s",)).port == 8080


# ----- size and schema ---------------------------------------------------------------------------------------

async def test_oversized_body_gets_413(client, kafka):
    status, body = await post(client, "x" * 5000)
    assert status == 413 and body["error"] == "body_too_large"
    assert kafka.sent == []


async def test_a_body_sent_in_chunks_is_read_whole_and_an_oversized_one_gets_413(client, kafka):
    async def chunks(data: bytes):
        for i in range(0, len(data), 100):
            yield data[i:i + 100]

    token = sign(SPEC_SAMPLE).encode()
    response = await client.post(URL, data=chunks(token), headers={"Content-Type": "application/jwt"})
    assert response.status == 202 and len(kafka.sent) == 1
    response = await client.post(URL, data=chunks(b"x" * 5000), headers={"Content-Type": "application/jwt"})
    assert response.status == 413 and (await response.json())["error"] == "body_too_large"
    assert len(kafka.sent) == 1


async def test_a_compressed_body_counts_decompressed_against_the_limit(client, kafka):
    token = sign(SPEC_SAMPLE).encode()
    for data, expected in ((token, 202), (token + b" " * 5000, 413)):  # 5 kB of spaces compress to a few bytes
        response = await client.post(URL, data=zlib.compress(data),
                                     headers={"Content-Type": "application/jwt", "Content-Encoding": "deflate"})
        assert response.status == expected
    assert len(kafka.sent) == 1


@pytest.mark.parametrize(("claims", "path"), [
    pytest.param(payload(date="yesterday"), "$.date", id="wrong-type"),
    pytest.param(payload(target={"id": [1]}), "$.target.id", id="wrong-type-nested"),
    pytest.param({k: v for k, v in SPEC_SAMPLE.items() if k != "on_duty_status"}, "$", id="missing-field"),
])
async def test_authentic_invalid_event_gets_422_with_path_and_is_kept_on_rejected_topic(client, kafka, claims, path):
    status, body = await post(client, sign(claims))
    assert status == 422
    assert body["error"] == "invalid_event" and body["path"] == path and body["detail"]
    [record] = kafka.sent
    assert record.topic == REJECTED
    rejected = msgspec.json.decode(record.value, type=RejectedAgentStatus)
    assert rejected.path == path and rejected.reason == body["detail"] and rejected.signed
    assert json.loads(rejected.payload) == claims
    if path == "$.date":
        assert record.key == b"5728255400000000" and rejected.agent_id == "5728255400000000"


async def test_missing_field_names_it(client):
    claims = {k: v for k, v in SPEC_SAMPLE.items() if k != "date"}
    _, body = await post(client, sign(claims))
    assert "date" in body["detail"]


async def test_invalid_json_is_422_and_the_raw_text_is_kept(start, settings, kafka):
    client = await start(replace(settings, allow_unsigned=True), kafka)
    status, body = await post(client, '{"target": {"id": 1}, "date": ', content_type="application/json")
    assert status == 422 and "JSON" in body["detail"]
    rejected = msgspec.json.decode(kafka.sent[0].value, type=RejectedAgentStatus)
    assert rejected.payload == '{"target": {"id": 1}, "date":' and rejected.signed is False


async def test_signed_payload_that_is_not_json_is_422_and_kept(client, kafka):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(b'not json at all')}"
    signature = b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    status, _ = await post(client, f"{signing_input}.{signature}")
    assert status == 422
    assert msgspec.json.decode(kafka.sent[0].value, type=RejectedAgentStatus).payload == "not json at all"



async def test_signed_payload_that_is_not_utf8_is_422_and_kept(client, kafka):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b'{"target": {"id": "\xff"}, "date": 1}'
    signing_input = f"{header}.{b64(claims)}"
    signature = b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    status, body = await post(client, f"{signing_input}.{signature}")
    assert status == 422 and body["error"] == "invalid_event"
    [record] = kafka.sent
    rejected = msgspec.json.decode(record.value, type=RejectedAgentStatus)
    assert record.key is None and rejected.agent_id is None and "\ufffd" in rejected.payload

def signed_raw(payload_bytes: bytes, header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    signing_input = f"{b64(header)}.{b64(payload_bytes)}"
    return f"{signing_input}.{b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())}"


async def test_signed_payload_nested_too_deeply_is_422_and_kept(client, kafka):
    deep = b'{"x":' + b"[" * 1100 + b"]" * 1100 + b"}"  # beyond msgspec's ~1,000 levels: RecursionError
    status, body = await post(client, signed_raw(deep))
    assert status == 422 and body["error"] == "invalid_event" and "nested too deeply" in body["detail"]
    [record] = kafka.sent
    assert msgspec.json.decode(record.value, type=RejectedAgentStatus).payload == deep.decode()


async def test_header_nested_too_deeply_is_401_malformed(client, kafka):
    status, body = await post(client, signed_raw(json.dumps(SPEC_SAMPLE).encode(),
                                                 header=b'{"alg":"HS256","x":' + b"[" * 1100 + b"]" * 1100 + b"}"))
    assert status == 401 and body["error"] == "verification_failed:malformed" and "too deeply" in body["detail"]
    assert kafka.sent == []


# ----- operating endpoints -----------------------------------------------------------------------------------

async def test_healthz_readyz_and_metrics(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["mode"] == "kafka"
    await post(client, sign(SPEC_SAMPLE))
    await post(client, "x" * 5000)
    text = await (await client.get("/metrics")).text()
    assert 'onduty_ingest_requests_total{outcome="published"} 1' in text
    assert 'onduty_ingest_requests_total{outcome="too_large"} 1' in text
    assert "onduty_ingest_publish_latency_seconds_count 1" in text
    assert "onduty_ingest_spool_depth 0" in text
    assert "onduty_ingest_producer_errors_total 0" in text


async def test_gc_is_tuned_while_serving_and_restored_at_shutdown(settings):
    before = gc.get_threshold()
    client = TestClient(TestServer(create_app(replace(settings, gc_young_threshold=12_345),
                                              publisher=MemoryPublisher())))
    await client.start_server()
    try:
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0  # what start-up built is never walked by later collections
        assert (await post(client, sign(SPEC_SAMPLE)))[0] == 202
    finally:
        await client.close()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
