"""Settings a component cannot use are refused at start with the variable named, not a traceback later."""

from __future__ import annotations

import dataclasses
import re
import socket

import pytest

from ingest import IngestSettings
from ingest.errors import ConfigurationError
from onduty import cli
from processors.settings import ProcessorSettings


@pytest.mark.parametrize("variable, value, words", [
    ("ONDUTY_WINDOWS", "0m,1h", "ONDUTY_WINDOWS must list"),
    ("ONDUTY_WINDOWS", "15m,15m", "distinct"),
    ("ONDUTY_WINDOWS", "", "ONDUTY_WINDOWS must list"),
    ("ONDUTY_PARTITIONS", "0", "ONDUTY_PARTITIONS must be positive"),
    ("ONDUTY_LATE_HORIZON", "0s", "ONDUTY_LATE_HORIZON must be positive"),
    ("ONDUTY_PROCESSOR_BATCH_SIZE", "0", "ONDUTY_PROCESSOR_BATCH_SIZE must be positive"),
    ("ONDUTY_STANDBY_REPLICAS", "-1", "ONDUTY_STANDBY_REPLICAS must not be negative"),
    ("ONDUTY_REPLICATION_FACTOR", "-2", "ONDUTY_REPLICATION_FACTOR must be positive"),
])
def test_processor_settings_refuse_values_a_worker_cannot_run_with(variable, value, words):
    with pytest.raises(ValueError, match=words):
        ProcessorSettings.from_env({variable: value}).check()


def test_default_processor_settings_pass_the_check():
    assert ProcessorSettings.from_env({}).check() == ProcessorSettings.from_env({})


@pytest.mark.parametrize("argv, variable, value, words", [
    (["processor"], "ONDUTY_WINDOWS", "0m", "onduty processor: ONDUTY_WINDOWS must list"),
    (["processor"], "ONDUTY_WINDOWS", "soon", "onduty processor: ONDUTY_WINDOWS: 'soon' is not a duration"),
    (["up"], "ONDUTY_INGEST_PORT", "x", "onduty up: ONDUTY_INGEST_PORT='x' is not an integer"),
    (["kafka"], "ONDUTY_KAFKA_PORT", "9o92", "onduty kafka: ONDUTY_KAFKA_PORT='9o92' is not an integer"),
])
def test_the_command_names_the_bad_setting_and_exits_2(monkeypatch, capsys, argv, variable, value, words):
    monkeypatch.setenv(variable, value)
    assert cli.main(argv) == 2
    assert words in capsys.readouterr().err


def test_an_unreachable_kafka_is_one_line_not_a_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ONDUTY_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens on port 1
    monkeypatch.setenv("ONDUTY_PROCESSOR_DATA_DIR", str(tmp_path))
    with socket.socket() as probe:  # a free query API port (the default may be taken on this machine)
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("ONDUTY_PROCESSOR_WEB_PORT", str(probe.getsockname()[1]))
    assert cli.main(["processor"]) == 2
    err = capsys.readouterr().err
    assert "onduty processor: cannot reach Kafka at 127.0.0.1:1" in err and "Traceback" not in err


@pytest.mark.parametrize("variable", ["ONDUTY_INGEST_PORT", "ONDUTY_KAFKA_PORT", "ONDUTY_PROCESSOR_WEB_PORT"])
def test_a_bad_variable_of_one_command_leaves_the_others_alone(monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, "not-a-port")
    with pytest.raises(SystemExit) as exited:
        cli.main(["schemas", "--help"])
    assert exited.value.code == 0 and "export" in capsys.readouterr().out


@pytest.mark.parametrize("changes, words", [
    ({"max_body_bytes": 2 * 1024 * 1024}, "ONDUTY_MAX_BODY_BYTES=2097152 is above"),
    ({"port": 70000}, "ONDUTY_INGEST_PORT=70000 is not a TCP port"),
    ({"port": -1}, "ONDUTY_INGEST_PORT=-1 is not a TCP port"),
    ({"raw_topic": "bad topic name!"}, "ONDUTY_RAW_TOPIC: 'bad topic name!' is not a Kafka topic name"),
    ({"rejected_topic": ".."}, "ONDUTY_REJECTED_TOPIC: '..' is not a Kafka topic name"),
])
def test_ingest_settings_refuse_what_kafka_or_the_network_would_refuse_later(changes, words):
    settings = dataclasses.replace(IngestSettings(webhook_secrets=("s",)), **changes)
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        settings.check()


def test_processor_settings_refuse_a_raw_topic_kafka_would_refuse():
    with pytest.raises(ValueError, match="ONDUTY_RAW_TOPIC: 'a/b' is not a Kafka topic name"):
        ProcessorSettings.from_env({"ONDUTY_RAW_TOPIC": "a/b"}).check()


def test_an_unusable_spool_directory_or_a_taken_port_stops_the_ingest_with_one_line(monkeypatch, caplog, tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setenv("ONDUTY_ALLOW_UNSIGNED", "true")
    monkeypatch.setenv("ONDUTY_SPOOL_DIR", str(not_a_directory))
    assert cli.main(["ingest", "--host", "127.0.0.1", "--port", "0"]) == 2
    assert f"ONDUTY_SPOOL_DIR='{not_a_directory}' cannot hold the spool" in caplog.text
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("ONDUTY_SPOOL_DIR", str(tmp_path / "spool"))
        port = taken.getsockname()[1]
        assert cli.main(["ingest", "--host", "127.0.0.1", "--port", str(port)]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in caplog.text


def test_a_taken_query_api_port_stops_the_processor_with_one_line_before_it_joins_the_group(monkeypatch, capsys,
                                                                                            tmp_path):
    monkeypatch.setenv("ONDUTY_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # checked first: Kafka is never asked
    monkeypatch.setenv("ONDUTY_PROCESSOR_DATA_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["processor", "--web-host", "127.0.0.1", "--web-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"onduty processor: the query API cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_a_data_directory_the_worker_cannot_use_stops_the_processor_with_one_line(monkeypatch, capsys, tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setenv("ONDUTY_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # checked first: Kafka is never asked
    monkeypatch.setenv("ONDUTY_PROCESSOR_DATA_DIR", str(not_a_directory))
    assert cli.main(["processor"]) == 2
    err = capsys.readouterr().err
    assert f"onduty processor: ONDUTY_PROCESSOR_DATA_DIR (--data-dir) '{not_a_directory}' cannot hold" in err
    assert "Traceback" not in err
