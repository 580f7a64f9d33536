"""What the shipments' tamper-evident records cost replay (target: <= 10% of its throughput).

Generates the simulator's mixed events (as bench_replay.py), then times, best of N runs each,
`chainsight replay` as users run it, without and with `--record-out` (every accepted event and
settled alert transition appended to its shipment's hash chain and written out), and prints
events/s, the ratio, and the record's size and entries.

    .venv/bin/python benchmarks/bench_record.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from chainsight.config import load_settings
from chainsight.engine.core import Engine
from chainsight.runtimes.replay import default_workers, replay
from chainsight.sim import simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-record-"))
    events = work / "events.jsonl"
    sim = simulate("default", shipments=max(1, args.events // 250), seed=11)
    n_lines = sim.write_jsonl(events)
    print(f"generated {n_lines:,} lines ({events.stat().st_size / 1e6:.0f} MB)")
    Engine()  # warm the Numba cache outside the timings
    # as `chainsight replay --record-out` sets it: a recording's blocks are made by size
    settings = dataclasses.replace(load_settings(), record_block_min=None)
    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for record in (False, True):
            result = replay(events, Engine(settings, record=record), work / "alerts.jsonl",
                            work / "dlq.jsonl", work / "state.json", workers=args.workers,
                            record_out=work / "record.jsonl" if record else None)
            timings[record].append(result.seconds)
    off, on = min(timings[False]), min(timings[True])
    size = (work / "record.jsonl").stat().st_size
    with open(work / "record.jsonl", "rb") as f:
        entries = sum(1 for _ in f)
    print(f"replay without record: {off:.2f} s ({result.events / off:,.0f} events/s; runs "
          f"{', '.join(f'{t:.2f}' for t in timings[False])} s)")
    print(f"replay with record:    {on:.2f} s ({result.events / on:,.0f} events/s; runs "
          f"{', '.join(f'{t:.2f}' for t in timings[True])} s)")
    print(f"record: {entries:,} entries, {size / 1e6:.0f} MB")
    print(f"cost of the record: {100 * (on / off - 1):+.1f}% of replay time "
          f"(target: <= 10%)")


if __name__ == "__main__":
    main()
