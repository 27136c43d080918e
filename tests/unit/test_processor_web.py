"""Where a worker's query API listens: its web host unless a bind address is set (never every interface by
default)."""

from __future__ import annotations

import dataclasses

from processors.app import create_app
from processors.settings import ProcessorSettings


def test_the_query_api_listens_on_the_web_host_by_default(tmp_path):
    settings = dataclasses.replace(ProcessorSettings.from_env({}), data_dir=tmp_path)
    conf = create_app(settings).conf
    assert conf.web_bind == "127.0.0.1" and str(conf.canonical_url) == "http://127.0.0.1:6066"


def test_a_bind_address_apart_from_the_address_other_workers_forward_to(tmp_path):
    settings = dataclasses.replace(
        ProcessorSettings.from_env({"ONDUTY_PROCESSOR_WEB_BIND": "0.0.0.0", "ONDUTY_PROCESSOR_WEB_HOST": "worker-1"}),
        data_dir=tmp_path)
    conf = create_app(settings).conf
    assert conf.web_bind == "0.0.0.0" and str(conf.canonical_url) == "http://worker-1:6066"
