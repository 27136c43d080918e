"""The ingest load check finds the local broker it pins (bench/ingest_load.py)."""

from pathlib import Path

from bench.ingest_load import server_properties


def test_the_broker_is_found_by_its_server_properties_not_by_the_log4j2_option():
    command = [b"java", b"-Xmx1G", b"-Dlog4j2.configurationFile=/tmp/onduty-kafka-x/log4j2.properties",
               b"-cp", b"/jars/*", b"kafka.Kafka", b"/tmp/onduty-kafka-x/server.properties"]
    assert server_properties(command) == [Path("/tmp/onduty-kafka-x/server.properties")]
