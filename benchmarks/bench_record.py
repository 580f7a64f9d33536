"""What the shipments' tamper-evident records cost replay (target: <= 10% of its throughput).

Generates the simulator's mixed events (as bench_replay.py), then runs, N times each and
interleaved, `chainsight replay EVENTS --alerts-out ... --dead-letter-out ... --state-out ...`
as users run it (a fresh process each time, default options), without and with
`--record-out RECORD.jsonl` (every accepted event and settled alert transition appended to its
shipment's hash chain, blocks made by size, written out). Prints the replay's throughput as the
command reports it (start-up left out: bench_replay.py measures that), the cost of the record
run by run (each run with the record against the run without it just before: on a shared
machine the elapsed time swings with the load) and best against best, the CPU time of each
run (the engine's process and its decode processes), and the record's size and entries.

    .venv/bin/python benchmarks/bench_record.py [--events 1000000] [--runs 9]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

from bench_replay import chainsight_command, timed

from chainsight.sim import simulate

TARGET = 0.10  # the record's cost, a fraction of replay's time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-record-"))
    events = work / "events.jsonl"
    sim = simulate("default", shipments=max(1, args.events // 250), seed=11)
    n_lines = sim.write_jsonl(events)
    print(f"generated {n_lines:,} lines ({events.stat().st_size / 1e6:.0f} MB)")
    command = [str(chainsight_command()), "replay", str(events),
               "--alerts-out", str(work / "alerts.jsonl"),
               "--dead-letter-out", str(work / "dlq.jsonl"),
               "--state-out", str(work / "state.json")]
    with_record = [*command, "--record-out", str(work / "record.jsonl")]
    timed(with_record)  # the Numba cache, and the files, warm
    seconds: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for record in (False, True):
            _, used, report = timed(with_record if record else command)
            n_events, per_s = _reported(report)
            seconds[record].append(n_events / per_s)
            cpu[record].append(used)
    for record in (False, True):
        runs = seconds[record]
        print(f"replay {'with' if record else 'without'} record: best {min(runs):.3f} s "
              f"({n_events / min(runs):,.0f} events/s); runs "
              f"{', '.join(f'{t:.2f}' for t in runs)} s; CPU (engine and decode processes) "
              f"median {statistics.median(cpu[record]):.2f} s")
    record_file = work / "record.jsonl"
    with open(record_file, "rb") as f:
        entries = sum(1 for _ in f)
    print(f"record: {entries:,} entries, {record_file.stat().st_size / 1e6:.0f} MB")
    paired = sorted(on / off for off, on in zip(seconds[False], seconds[True], strict=True))
    median = statistics.median(paired) - 1
    print(f"cost of the record, run by run: median {100 * median:+.1f}% "
          f"({', '.join(f'{100 * (r - 1):+.0f}%' for r in paired)}); best against best "
          f"{100 * (min(seconds[True]) / min(seconds[False]) - 1):+.1f}%; CPU "
          f"{100 * (statistics.median(cpu[True]) / statistics.median(cpu[False]) - 1):+.1f}% "
          f"(target: <= {100 * TARGET:.0f}%: {'met' if median <= TARGET else 'not met'})")


def _reported(report: str) -> tuple[int, float]:
    """(events, events/s) from `chainsight replay`'s report."""
    found = re.search(r"replayed ([\d,]+) events in [\d.]+ s \(([\d,]+) events/s\)", report)
    if found is None:
        raise SystemExit(f"unexpected report from chainsight replay: {report!r}")
    return int(found[1].replace(",", "")), float(found[2].replace(",", ""))


if __name__ == "__main__":
    main()
