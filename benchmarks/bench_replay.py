"""Replay throughput against the floor of merely parsing the same lines with orjson.

Generates ~1,000,000 mixed events with the simulator (GPS, reefer sensors, RFID scans, orders,
with duplicates, skewed clocks and offline bursts), then times, best of N runs:
  floor:  for line in file: orjson.loads(line)
  replay: chainsight.runtimes.replay.replay(file), alerts, dead letters and state to files
          (as `chainsight replay`: decode processes ahead of the engine on a multi-core machine)
and prints events/s and the ratio replay/floor (target: <= 3x).

    .venv/bin/python benchmarks/bench_replay.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from chainsight.engine.core import Engine
from chainsight.runtimes.replay import default_workers, replay
from chainsight.sim import simulate


def parse_floor(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="decode processes, as `chainsight replay --workers`")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    events = work / "events.jsonl"
    per_shipment = 250  # the default scenario: ~250 events per shipment and hour
    sim = simulate("default", shipments=max(1, args.events // per_shipment), seed=11)
    n_lines = sim.write_jsonl(events)
    print(f"generated {n_lines:,} lines ({events.stat().st_size / 1e6:.0f} MB): "
          f"{sim.counts()}")

    Engine()  # warm the Numba cache outside the timings
    floor = min(parse_floor(events) for _ in range(args.runs))
    times = []
    for _ in range(args.runs):
        result = replay(events, Engine(), work / "alerts.jsonl", work / "dlq.jsonl",
                        work / "state.json", workers=args.workers)
        times.append(result.seconds)
    best = min(times)
    print(f"orjson parse floor: {floor:.2f} s ({n_lines / floor:,.0f} lines/s)")
    print(f"replay:             {best:.2f} s ({result.events / best:,.0f} events/s; runs "
          f"{', '.join(f'{t:.2f}' for t in times)} s), {result.alerts:,} alert transitions, "
          f"{result.rejected:,} rejected")
    print(f"ratio replay/floor: {best / floor:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
