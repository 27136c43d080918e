"""Bad input to `onduty simulate` and `onduty tail` ends with one line naming the option and what was wrong (exit 2),
never a traceback, and is never silently replaced by a default."""

from __future__ import annotations

import pytest

from onduty import cli


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own `error: argument --x: …`
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("options, words", [
    (["--windows", "7x"], "argument --windows: '7x' is not a duration"),
    (["--windows", "0m"], "argument --windows: '0m' is not a list of distinct positive window sizes"),
    (["--windows", "15m,15m"], "argument --windows: '15m,15m' is not a list of distinct positive"),
    (["--start", "yesterday"], "argument --start: 'yesterday' is not a time: use ISO 8601"),
    (["--partitions", "0"], "argument --partitions: must be positive, not 0"),
    (["--partitions", "-1"], "argument --partitions: must be positive, not -1"),
    (["--duration", "soon"], "argument --duration: 'soon' is not a duration"),
    (["--concurrency", "0"], "argument --concurrency: must be positive, not 0"),
    (["--rate", "-5"], "argument --rate: must be positive, not -5"),
])
def test_bad_options_are_refused_with_the_option_named(capsys, tmp_path, options, words):
    out = tmp_path / "day.jsonl"
    code, err = _run(["simulate", "--agents", "2", "--duration", "1h", *options, "--out", str(out)], capsys)
    assert code == 2
    assert words in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("variable, value, words", [
    ("ONDUTY_WINDOWS", "0m", "onduty simulate: ONDUTY_WINDOWS: '0m' is not a list of distinct positive"),
    ("ONDUTY_PARTITIONS", "0", "onduty simulate: ONDUTY_PARTITIONS must be positive, not 0"),
])
def test_bad_settings_are_refused_before_anything_is_written(monkeypatch, capsys, tmp_path, variable, value, words):
    monkeypatch.setenv(variable, value)
    out = tmp_path / "day.jsonl"
    code, err = _run(["simulate", "--agents", "2", "--duration", "1h", "--out", str(out)], capsys)
    assert (code, words in err, out.exists()) == (2, True, False), err


def test_good_options_are_used(capsys, tmp_path):
    import json

    out = tmp_path / "day.jsonl"
    code, err = _run(["simulate", "--agents", "2", "--duration", "1h", "--start", "2026-01-05T08:00Z",
                      "--windows", "15m,1h", "--partitions", "3", "--out", str(out)], capsys)
    assert code == 0, err
    expected = json.loads((tmp_path / "day.jsonl.expected.json").read_text())
    assert expected["partitions"] == 3
    assert expected["window_sizes"] == {"15m": 900_000, "1h": 3_600_000}
    assert expected["simulation"]["start_ms"] == 1_767_600_000_000


def test_an_out_file_that_cannot_be_written_is_named(capsys, tmp_path):
    out = tmp_path / "no-such-dir" / "traffic.jsonl"
    code, err = _run(["simulate", "--agents", "2", "--duration", "5m", "--out", str(out)], capsys)
    assert code == 2
    assert f"onduty simulate: --out {out}: cannot write {out}: no such file or directory" in err
    assert "Traceback" not in err


def test_a_missing_replay_file_is_named(capsys, tmp_path):
    missing = tmp_path / "nofile.jsonl"
    code, err = _run(["simulate", "--replay", str(missing), "--unsigned"], capsys)
    assert code == 2
    assert f"onduty simulate: --replay {missing}: no such file or directory" in err and "Traceback" not in err


def test_a_replay_file_that_is_not_deliveries_is_named(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("garbage\n")
    code, err = _run(["simulate", "--replay", str(bad), "--unsigned"], capsys)
    assert code == 2
    assert f"onduty simulate: --replay {bad}: {bad}:1: not a simulator delivery line" in err


def test_missing_expected_results_for_verify_are_named(capsys, tmp_path):
    missing = tmp_path / "nofile.jsonl"
    code, err = _run(["simulate", "--verify", str(missing)], capsys)
    assert code == 2
    assert f"onduty simulate: --verify {missing}: cannot read the expected results {missing}.expected.json" in err


def test_verify_against_an_unreachable_kafka_is_one_line(monkeypatch, capsys, tmp_path):
    out = tmp_path / "day.jsonl"
    assert _run(["simulate", "--agents", "2", "--duration", "1h", "--out", str(out)], capsys)[0] == 0
    monkeypatch.setenv("ONDUTY_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens on port 1
    code, err = _run(["simulate", "--verify", str(out)], capsys)
    assert code == 2
    assert "onduty simulate: --verify: cannot reach Kafka at 127.0.0.1:1" in err and "Traceback" not in err


def test_tail_against_an_unreachable_kafka_is_one_line(capsys):
    code, err = _run(["tail", "onduty.agent-state.v1", "--bootstrap", "127.0.0.1:1"], capsys)
    assert code == 2
    assert "onduty tail: cannot reach Kafka at 127.0.0.1:1" in err and "Traceback" not in err
