"""`onduty up`'s parts: the dev secret it generates, the signed sample it prints, its refusal of busy ports, and
what it does when the broker it started dies."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time

import jwt
import pytest

from onduty import stack as stack_module
from onduty.stack import (
    DEV_SECRET_FILE,
    LocalStack,
    Service,
    StackConfig,
    StackError,
    missing_commands,
    sample_token,
    webhook_secrets,
)
from schemas import decode_agent_status_payload


def test_without_a_configured_secret_a_dev_secret_is_generated_once_kept_private_and_reused(tmp_path):
    config = StackConfig(var_dir=tmp_path, environ={})
    secret, generated = webhook_secrets(config)
    assert generated and len(secret) >= 32
    path = tmp_path / DEV_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert webhook_secrets(config) == (secret, True)  # tokens signed earlier stay valid across restarts


def test_a_configured_secret_is_used_and_nothing_is_generated(tmp_path):
    config = StackConfig(var_dir=tmp_path, environ={"ONDUTY_WEBHOOK_SECRETS": "s1,s2"})
    assert webhook_secrets(config) == ("s1,s2", False)
    assert not (tmp_path / DEV_SECRET_FILE).exists()


def test_the_printed_sample_is_an_hs256_token_of_a_valid_agent_status_event():
    token = sample_token("a-development-secret-of-32-bytes!", date_ms=1_700_000_000_000)
    claims = jwt.decode(token, "a-development-secret-of-32-bytes!", algorithms=["HS256"])
    event = decode_agent_status_payload(claims)
    assert (event.agent_id, event.on_duty_status, event.date) == ("5728255400000000", "available", 1_700_000_000_000)


def test_the_banner_says_where_to_send_webhooks_and_where_to_query(tmp_path):
    stack = LocalStack(StackConfig(var_dir=tmp_path, environ={}, workers=3, ingest_port=8181, first_web_port=7000))
    stack.secret, stack.generated_secret = webhook_secrets(stack.config)
    banner = stack.banner()
    assert "curl -i -X POST http://127.0.0.1:8181/webhooks/dialpad/agent-status --data-binary 'ey" in banner
    assert "http://127.0.0.1:7000, http://127.0.0.1:7001, http://127.0.0.1:7002" in banner
    assert "curl http://127.0.0.1:7000/callcenters/5883344555555555" in banner
    assert stack.secret in banner and "generated for development" in banner


def test_the_services_commands_exist_in_this_checkout():
    assert missing_commands() == []


def test_a_busy_port_stops_the_start_before_anything_runs(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = LocalStack(StackConfig(var_dir=tmp_path, bootstrap="127.0.0.1:1", ingest_port=port, environ={}))
        with pytest.raises(StackError, match=f"ingest port {port}"):
            stack.start()
    assert stack.services == [] and not (tmp_path / DEV_SECRET_FILE).exists()


def test_a_broker_the_stack_started_that_dies_is_reported_like_a_dead_service(tmp_path, monkeypatch):
    """`onduty up` names what died, shows its last lines and stops the rest: the broker it started too, not only
    the ingest and the workers (before, a dead broker left the stack running on without Kafka, silently)."""
    from onduty.kafka_broker import BrokerConfig, LocalKafkaBroker

    stack = LocalStack(StackConfig(var_dir=tmp_path, environ={}))
    stack.broker = LocalKafkaBroker(BrokerConfig(data_dir=tmp_path / "kafka", port=1))
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "broker.stdout").write_text("java.lang.OutOfMemoryError: Java heap space\n")
    stack.broker.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert stack.dead_service() is None
        stack.broker.process.kill()
        stack.broker.process.wait()
        dead = stack.wait(lambda: False)
        assert dead is stack.broker
        assert f"{dead.name} {dead.exit_reason()}" == "Kafka was killed by SIGKILL"
        assert "OutOfMemoryError" in dead.log_tail()
        # the services then get BROKER_GONE_STOP_S, not 30 s each (a worker would spend them trying to commit)
        monkeypatch.setattr(stack_module, "BROKER_GONE_STOP_S", 0.5)
        stubborn = Service("processor-1", [sys.executable, "-c", "import signal, time; "
                           "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"],
                           {}, tmp_path / "processor-1.log")
        stubborn.start()
        stack.services.append(stubborn)
        while "up" not in stubborn.log_tail():  # its SIGTERM handler is in place
            time.sleep(0.05)
        started = time.monotonic()
        stack.stop()
        assert time.monotonic() - started < 10
        assert stubborn.exit_reason() == "was killed by SIGKILL"
    finally:
        stack.stop()
