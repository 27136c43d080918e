"""Recording benchmark runs: a run adds its section to bench/RESULTS.md and never loses the earlier ones."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import RESULTS_FILE, RESULTS_HEADER, build_parser, record_run, results_file


def test_a_run_is_added_on_top_and_earlier_runs_are_kept(tmp_path: Path):
    path = tmp_path / "RESULTS.md"
    record_run(path, "## first run\n")
    record_run(path, "## second run\n")
    text = path.read_text()
    assert text.startswith(RESULTS_HEADER)
    assert text.count(RESULTS_HEADER) == 1
    assert text.index("## second run") < text.index("## first run")


def test_a_file_with_history_keeps_it(tmp_path: Path):
    path = tmp_path / "RESULTS.md"
    path.write_text(RESULTS_HEADER + "## 2026-11-30 run\n\n" + "## 2026-11-20 run\n")
    record_run(path, "## new run\n")
    assert [line for line in path.read_text().splitlines() if line.startswith("## ")] == [
        "## new run", "## 2026-11-30 run", "## 2026-11-20 run"]


def test_where_a_run_is_recorded():
    parse = build_parser().parse_args
    assert results_file(parse(["processors"])) == RESULTS_FILE
    assert results_file(parse(["processors", "--append"])) == RESULTS_FILE  # old command lines still work
    # `make bench BENCH="processors --quick"` checks the harness: its figures do not go into the results
    assert results_file(parse(["processors", "--quick"])) is None
    assert results_file(parse(["processors", "--quick", "--output", "quick.md"])) == Path("quick.md")
