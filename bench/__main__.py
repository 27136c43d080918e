"""Run the benchmarks: ``.venv/bin/python -m bench [ingest processors e2e replay] [--rounds N] [--quick]``
(or ``make bench``). Prints a table and adds it, with the machine it ran on, to the top of ``bench/RESULTS.md``:
earlier runs are always kept. A ``--quick`` run (small inputs, for checking the harness) only prints its table,
unless ``--output`` names a file.

Not part of the test suite. The processor, end-to-end and replay benchmarks start a quiet Kafka broker of their
own on a free loopback port unless ``--bootstrap`` names one; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import atexit
import asyncio
import datetime as dt
import logging
import signal
import sys
import traceback
from pathlib import Path

from bench.common import (
    BenchmarkSkipped,
    Result,
    cleanup,
    kafka,
    machine,
    stop_children,
    table,
    use_revision,
    workdir,
)

BENCHMARKS = ("ingest", "processors", "e2e", "replay")
NEEDS_KAFKA = {"ingest", "processors", "e2e", "replay"}
TITLES = {
    "ingest": ("ingest", "requests/s at 64 connections"),
    "processors": ("processors", "input events/s per worker"),
    "e2e": ("end to end", "POST -> roster record p50/p99 at 500/s"),
    "replay": ("replay", "one simulated day of 5,000 agents"),
}


async def _run_one(name: str, bootstrap: str | None, work: Path, args: argparse.Namespace) -> list[Result]:
    rounds = args.rounds if args.rounds else (1 if name == "replay" else 3)
    if name == "ingest":
        from bench.ingest import ingest_benchmark

        return await ingest_benchmark(bootstrap, work, rounds, args.quick)
    if name == "processors":
        from bench.processors import processors_benchmark

        return await processors_benchmark(bootstrap, work, rounds, args.quick)
    if name == "e2e":
        from bench.e2e import e2e_benchmark

        return await e2e_benchmark(bootstrap, work, rounds, args.quick)
    from bench.processors import replay_benchmark

    return await replay_benchmark(bootstrap, work, rounds, args.quick)


def render(results: list[Result], args: argparse.Namespace, host: dict[str, str]) -> str:
    lines = [
        f"## {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC" + (f", services at `{args.commit}`"
                                                                      if getattr(args, "commit", None) else ""),
        "",
        "Measured with "
        f"`python -m bench {' '.join(args.benchmarks)}" + (" --quick" if args.quick else "")
        + (f" --rounds {args.rounds}" if args.rounds else "") + (f" --rev {args.rev}" if args.rev else "") + "`"
        + (f", services from commit `{args.commit}`." if getattr(args, "commit", None) else
           ", services from the working tree."),
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in host.items()),
        "",
        table(results),
        "",
        "Each cell: median (min–max over the rounds). Candidate and ceiling run in the same process, on the same "
        "machine, one after the other. The ratio is candidate / ceiling: for rates, the share of the ceiling "
        "reached; for times and latencies, how many times longer than the ceiling.",
        "",
        "The development machines are small shared VMs (other developers' tests and builds run at the same time): "
        "absolute figures are noisy, compare ratios measured in the same run.",
        "",
    ]
    for r in results:
        if r.notes:
            lines.append(f"**{r.name}** — " + "; ".join(r.notes))
            lines.append("")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    work = workdir()
    if args.rev:
        args.commit = use_revision(args.rev, work / "source")
        print(f"services run from commit {args.commit}", file=sys.stderr)
    try:
        needs_kafka = any(name in NEEDS_KAFKA for name in args.benchmarks)
        with (kafka(args.bootstrap, work) if needs_kafka else _nothing()) as bootstrap:
            for name in args.benchmarks:
                print(f"== {name}", file=sys.stderr, flush=True)
                before = len(results)
                try:
                    results.extend(await _run_one(name, bootstrap, work, args))
                except BenchmarkSkipped as skipped:
                    title, metric = TITLES[name]
                    results.append(Result(title, metric, "", "", "", skipped=str(skipped)))
                except Exception as exc:  # one failing benchmark must not lose the others' figures
                    traceback.print_exc()
                    title, metric = TITLES[name]
                    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    results.append(Result(title, metric, "", "", "", skipped=f"failed: {first_line}"))
                print(table(results[before:]), file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            cleanup(work)
        else:
            print(f"kept {work}", file=sys.stderr)
    return results


RESULTS_FILE = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADER = "# Benchmark results\n\nWritten by `python -m bench` (`make bench`); the newest run first.\n\n"


def results_file(args: argparse.Namespace) -> Path | None:
    """Where this run is recorded: ``--output``, else ``bench/RESULTS.md``; a ``--quick`` run nowhere by default."""
    if args.output is not None:
        return args.output
    return None if args.quick else RESULTS_FILE


def record_run(path: Path, section: str) -> None:
    """Add one run's section at the top of ``path``, keeping every earlier run below it."""
    previous = path.read_text() if path.exists() else ""
    if previous.startswith(RESULTS_HEADER):
        previous = previous[len(RESULTS_HEADER):]
    path.write_text(RESULTS_HEADER + section + ("\n" + previous if previous else ""))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per benchmark (default 3, replay 1)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for checking the harness")
    parser.add_argument("--bootstrap", default=None, help="use this Kafka broker instead of starting a quiet one")
    parser.add_argument("--output", type=Path, default=None,
                        help="add the run to this file (default bench/RESULTS.md; a --quick run: no file)")
    parser.add_argument("--rev", default=None,
                        help="run the services from this committed revision (git archive) instead of the working "
                             "tree, e.g. HEAD")
    parser.add_argument("--append", action="store_true",
                        help="accepted for old command lines: every run keeps the earlier ones (newest first)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of the services)")
    parser.add_argument("--verbose", action="store_true", help="log the benchmarks' details (e.g. output growth)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.benchmarks = args.benchmarks or list(BENCHMARKS)
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("bench").setLevel(logging.INFO)
    host = machine()
    # a SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so services and the broker are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    atexit.register(stop_children)
    results = asyncio.run(main_async(args))
    section = render(results, args, host)
    print(section)
    output = results_file(args)
    if output is None:
        print("a --quick run is not recorded (pass --output FILE to keep it)", file=sys.stderr)
        return 0
    record_run(output, section)
    print(f"added the run to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
