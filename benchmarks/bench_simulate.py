"""Events/s generated to a JSON Lines file on one core (target >= 200,000/s).

    .venv/bin/python benchmarks/bench_simulate.py [--shipments 1000] [--duration 1h] [--repeat 3]

Times the whole path: build the scenario (world, trips, faults, truth) + render + write the
file in arrival order. Reports the best of ``--repeat`` runs (wall and CPU time) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from chainsight.sim import JsonlFileSink, load_scenario, run, simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--shipments", type=int, default=1000)
    ap.add_argument("--duration", default="1h")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="keep the events file here (default: temp file)")
    args = ap.parse_args()
    scn = load_scenario(args.scenario, shipments=args.shipments, duration=args.duration)
    out = args.out or os.path.join(tempfile.mkdtemp(), "events.jsonl")
    best = None
    for _ in range(args.repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        sim = simulate(scn)
        w1 = time.perf_counter()
        stats = run(sim, JsonlFileSink(out))
        w2, c2 = time.perf_counter(), time.process_time()
        r = {"wall_s": w2 - w0, "cpu_s": c2 - c0, "generate_wall_s": w1 - w0,
             "write_wall_s": w2 - w1, "events": int(stats["sent"])}
        if best is None or r["wall_s"] < best["wall_s"]:
            best = r
    assert best is not None
    counts = sim.counts()
    print(json.dumps({
        "scenario": scn.name, "shipments": scn.shipments, "duration": scn.duration,
        "events": best["events"], "counts": counts,
        "events_per_s": round(best["events"] / best["wall_s"]),
        "events_per_cpu_s": round(best["events"] / best["cpu_s"]),
        "generate_s": round(best["generate_wall_s"], 3),
        "write_s": round(best["write_wall_s"], 3),
        "file_mb": round(os.path.getsize(out) / 1e6, 1),
        "target_events_per_s": 200_000,
    }, indent=2))


if __name__ == "__main__":
    main()
