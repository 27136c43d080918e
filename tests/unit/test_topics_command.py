"""``onduty topics`` manages the topics under the names the services are configured with."""

from __future__ import annotations

from onduty import cli


def test_the_raw_and_rejected_topics_follow_the_ingest_settings(monkeypatch, capsys):
    seen = []

    async def ensure_topics(bootstrap, specs, **options):
        seen.extend(spec.name for spec in specs)
        return []

    monkeypatch.setattr("onduty.topics_admin.ensure_topics", ensure_topics)
    monkeypatch.setenv("ONDUTY_RAW_TOPIC", "acme.status")
    monkeypatch.setenv("ONDUTY_REJECTED_TOPIC", "acme.rejected")
    assert cli.main(["topics", "--bootstrap", "127.0.0.1:1"]) == 0
    assert seen[:2] == ["acme.status", "acme.rejected"]
    assert "dialpad.agent-status.rejected.v1" not in seen
