"""What the shipments' tamper-evident records cost replay (target: <= 10% of its throughput).

Generates the simulator's mixed events (as bench_replay.py), then times, best of N runs each
(interleaved), `chainsight replay` as users run it, without and with `--record-out` (every
accepted event and settled alert transition appended to its shipment's hash chain and written
out), and prints events/s, the ratio, and the record's size and entries. On a shared machine the
elapsed time swings with the load, so it also prints the CPU time each run took: this process's
(the engine, and the record) and the decode processes'.

    .venv/bin/python benchmarks/bench_record.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
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
    cpu: dict[bool, list[tuple[float, float]]] = {False: [], True: []}  # (this process, decode)
    for _ in range(args.runs):
        for record in (False, True):
            engine = Engine(settings, record=record)
            started, decode_started = time.process_time(), _children_cpu()
            result = replay(events, engine, work / "alerts.jsonl",
                            work / "dlq.jsonl", work / "state.json", workers=args.workers,
                            record_out=work / "record.jsonl" if record else None)
            timings[record].append(result.seconds)
            cpu[record].append((time.process_time() - started, _children_cpu() - decode_started))
    off, on = min(timings[False]), min(timings[True])
    size = (work / "record.jsonl").stat().st_size
    with open(work / "record.jsonl", "rb") as f:
        entries = sum(1 for _ in f)
    print(f"replay without record: {off:.2f} s ({result.events / off:,.0f} events/s; runs "
          f"{', '.join(f'{t:.2f}' for t in timings[False])} s)")
    print(f"replay with record:    {on:.2f} s ({result.events / on:,.0f} events/s; runs "
          f"{', '.join(f'{t:.2f}' for t in timings[True])} s)")
    for record in (False, True):
        print(f"CPU {'with' if record else 'without'} record: this process "
              f"{', '.join(f'{c:.2f}' for c, _ in cpu[record])} s; decode processes "
              f"{', '.join(f'{d:.2f}' for _, d in cpu[record])} s")
    main_off, main_on = (min(c for c, _ in cpu[record]) for record in (False, True))
    print(f"CPU of this process, best: {main_off:.2f} s without, {main_on:.2f} s with the "
          f"record ({100 * (main_on / main_off - 1):+.1f}%)")
    print(f"record: {entries:,} entries, {size / 1e6:.0f} MB")
    print(f"cost of the record: {100 * (on / off - 1):+.1f}% of replay time "
          f"(target: <= 10%)")
    paired = sorted(t_on / t_off for t_off, t_on in zip(timings[False], timings[True],
                                                          strict=True))
    print(f"run by run (each with record / the run before it without): median "
          f"{100 * (paired[len(paired) // 2] - 1):+.1f}%, "
          f"{', '.join(f'{100 * (r - 1):+.0f}%' for r in paired)}")


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the decode processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
