"""Replay throughput against the floor of merely parsing the same lines with orjson.

Two shapes of input (--shape):
- sim (default): ~1,000,000 mixed events from the simulator (GPS, reefer sensors, RFID scans,
  orders, with duplicates, skewed clocks and offline bursts), replayed in this process by
  chainsight.runtimes.replay.replay (alerts, dead letters and state to files; decode processes
  ahead of the engine on a multi-core machine, as `chainsight replay`).
- short (the held-out shape of issue 18): 1,000,000 short lines (~120 bytes: 60% gps, 35%
  sensor, 5% scans; only the fields a device sends, ISO times, no event_id), 5,000 shipments
  driving over 1,000 dense polygon fences (dense_fences.py), a little out of order; replayed end
  to end as a user runs it: `chainsight replay EVENTS --fences ... --alerts-out ...
  --dead-letter-out ... --state-out ...` in a subprocess, start-up included, default options.
Both time, best of N runs:
  floor:  for line in file: orjson.loads(line)
  replay: as above
and print events/s and the ratio replay/floor (target: <= 3x).
- startup (also printed by short, first): `chainsight replay` as above of the short shape's
  first 1,000 lines, the same fences: median wall and CPU time of 10 runs (target <= 0.5 s,
  stretch 0.35 s), next to the floor of starting Python and importing numpy and Numba.
The short shape's runs start with the package's bytecode compiled, as `pip install` leaves it
(an editable install under PYTHONDONTWRITEBYTECODE would compile every module at every start).

    .venv/bin/python benchmarks/bench_replay.py [--shape sim|short|startup] [--events 1000000]
        [--runs 3]
"""

from __future__ import annotations

import argparse
import compileall
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import shapely
from dense_fences import BOX, dense_fences

import chainsight
from chainsight.engine.core import Engine
from chainsight.runtimes.replay import default_workers, replay
from chainsight.sim import simulate

TARGET = 3.0  # replay / parse floor
START_UP_TARGET, START_UP_STRETCH = 0.5, 0.35  # seconds, `chainsight replay` of 1,000 lines
START_UP_LINES, START_UP_RUNS = 1_000, 10
STEPS = ("received", "put_away", "picked", "packed", "loaded", "unloaded", "received", "picked",
         "loaded", "delivered")  # a shipment's scans
SHIPMENTS = 5_000
FENCES = 1_000


def parse_floor(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - started


def write_fences(path: Path, rng: np.random.Generator) -> None:
    kinds = ("hub", "customer", "restricted", "cold_store")
    features = [{"type": "Feature",
                 "properties": {"fence_id": f"F{i:04d}", "kind": kinds[i % len(kinds)]},
                 "geometry": shapely.geometry.mapping(g)}
                for i, g in enumerate(dense_fences(FENCES, rng))]
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))


def short_lines(n_events: int, rng: np.random.Generator) -> list[bytes]:
    """The short-line events in arrival order: up to SHIPMENTS shipments each send 200 events
    (120 fixes every 30 s, 70 readings every ~51 s, 10 scans) over an hour starting in the
    first hour; arrival is event time plus ~2 s, and 1% of events come up to 3 min late."""
    n_gps, n_sensor, n_scan = 120, 70, 10
    shipments = max(1, min(SHIPMENTS, n_events // 200))
    ship = np.arange(shipments)[:, None]
    t0 = np.datetime64("2026-11-25T08:00:00.000") + rng.integers(0, 3_600_000, (shipments, 1))
    # GPS: a slowly turning heading at 40-90 km/h from a start anywhere in the box
    heading = rng.uniform(0, 2 * np.pi, (shipments, 1)) + np.cumsum(
        rng.normal(0, 0.15, (shipments, n_gps)), axis=1)
    step_m = rng.uniform(40, 90, (shipments, 1)) / 3.6 * 30
    lat = rng.uniform(BOX[1], BOX[3], (shipments, 1)) + np.cumsum(
        step_m * np.sin(heading) / 110_574, axis=1)
    lon = rng.uniform(BOX[0], BOX[2], (shipments, 1)) + np.cumsum(
        step_m * np.cos(heading) / (111_320 * np.cos(np.radians(lat))), axis=1)
    temp = 4.0 + np.cumsum(rng.normal(0, 0.15, (shipments, n_sensor)), axis=1)
    site = rng.integers(0, 40, (shipments, n_scan))

    def times(count: int, every_ms: float) -> np.ndarray:
        return t0 + (np.arange(count) * every_ms).astype(np.int64)

    gps_t, sensor_t = times(n_gps, 30_000), times(n_sensor, 3_600_000 / n_sensor)
    scan_t = times(n_scan, 3_600_000 / n_scan)

    def iso(t: np.ndarray) -> np.ndarray:
        return np.char.add(np.datetime_as_string(t.ravel(), unit="ms"), "Z")

    lines = [f'{{"type":"gps","device_id":"TRK-{s:05d}","shipment_id":"SHP-{s:05d}","ts":"{t}",'
             f'"lat":{y:.6f},"lon":{x:.6f}}}'
             for s, t, y, x in zip(np.repeat(ship, n_gps), iso(gps_t), lat.ravel(), lon.ravel(),
                                   strict=True)]
    lines += [f'{{"type":"sensor","device_id":"RFR-{s:05d}","shipment_id":"SHP-{s:05d}",'
              f'"ts":"{t}","temp_c":{c:.2f}}}'
              for s, t, c in zip(np.repeat(ship, n_sensor), iso(sensor_t), temp.ravel(),
                                 strict=True)]
    lines += [f'{{"type":"scan","shipment_id":"SHP-{s:05d}","ts":"{t}","site_id":"HUB-{h:02d}",'
              f'"step":"{STEPS[k % len(STEPS)]}"}}'
              for s, t, h, k in zip(np.repeat(ship, n_scan), iso(scan_t), site.ravel(),
                                    np.tile(np.arange(n_scan), shipments), strict=True)]
    event_ms = np.concatenate([t.ravel() for t in (gps_t, sensor_t, scan_t)]).astype(np.int64)
    delay = rng.exponential(2_000, event_ms.size)
    late = rng.random(event_ms.size) < 0.01
    delay[late] += rng.uniform(0, 180_000, late.sum())
    return [lines[i].encode() for i in np.argsort(event_ms + delay, kind="stable")]


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall and CPU time (user + system, its child processes included) of a command, and
    what it wrote on stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done.stderr.strip()


def chainsight_command() -> Path:
    """The `chainsight` command installed beside this interpreter (a clear exit without it)."""
    exe = Path(sys.executable).with_name("chainsight")
    if not exe.exists():
        raise SystemExit(f"{exe} not found: install the project into this environment")
    return exe


def replay_command(events: Path, fences: Path, work: Path) -> tuple[float, float, str]:
    """Wall and CPU time of `chainsight replay` in a subprocess, and what it reports."""
    return timed([str(chainsight_command()), "replay", str(events), "--fences", str(fences),
                  "--alerts-out", str(work / "alerts.jsonl"),
                  "--dead-letter-out", str(work / "dlq.jsonl"),
                  "--state-out", str(work / "state.json")])


def compile_bytecode() -> None:
    """Compile the package's bytecode, as pip does when it installs a wheel."""
    package = Path(chainsight.__file__).parent
    compileall.compile_dir(package, quiet=1)
    print(f"bytecode of {package} compiled (compileall), as pip install leaves it")


def bench_startup(lines: list[bytes], fences: Path, work: Path) -> None:
    events = work / "start.jsonl"
    events.write_bytes(b"\n".join(lines[:START_UP_LINES]) + b"\n")
    replay_command(events, fences, work)  # the Numba cache, and the files, warm
    runs = [replay_command(events, fences, work)[:2] for _ in range(START_UP_RUNS)]
    floor = [timed([sys.executable, "-c", "import numpy, numba"])[:2]
             for _ in range(START_UP_RUNS)]

    def median(values: list[tuple[float, float]], i: int) -> float:
        return statistics.median(v[i] for v in values)

    print(f"start-up: `chainsight replay` of {START_UP_LINES:,} lines with {FENCES:,} fences: "
          f"median of {START_UP_RUNS} {median(runs, 0):.3f} s wall, {median(runs, 1):.3f} s CPU "
          f"(target <= {START_UP_TARGET} s, stretch {START_UP_STRETCH} s); floor `python -c "
          f"'import numpy, numba'` {median(floor, 0):.3f} s wall, {median(floor, 1):.3f} s CPU")


def bench_short(args: argparse.Namespace, work: Path) -> None:
    rng = np.random.default_rng(18)
    events, fences = work / "events.jsonl", work / "fences.geojson"
    write_fences(fences, rng)
    lines = short_lines(args.events, rng)
    events.write_bytes(b"\n".join(lines) + b"\n")
    kinds = {k: sum(line.startswith(b'{"type":"%s"' % k.encode()) for line in lines)
             for k in ("gps", "sensor", "scan")}
    print(f"generated {len(lines):,} short lines ({events.stat().st_size / 1e6:.0f} MB, "
          f"{events.stat().st_size / len(lines):.0f} bytes a line): {kinds}, "
          f"{len(lines) // 200:,} shipments, {FENCES:,} polygon fences")
    compile_bytecode()
    bench_startup(lines, fences, work)
    if args.shape == "startup":
        return
    replay_command(events, fences, work)  # fill the Numba cache outside the timings
    floor = min(parse_floor(events) for _ in range(args.runs))
    runs = [replay_command(events, fences, work) for _ in range(args.runs)]
    best, _, report = min(runs)
    inside = float(re.search(r"in ([0-9.]+) s", report).group(1))
    print(f"orjson parse floor: {floor:.2f} s ({len(lines) / floor:,.0f} lines/s)")
    print(f"chainsight replay:  {best:.2f} s end to end (runs "
          f"{', '.join(f'{t:.2f}' for t, _, _ in runs)} s); of the best run {inside:.2f} s in the "
          f"replay loop, {best - inside:.2f} s around it (imports, fences, engine, exit); "
          f"it said: {report.splitlines()[0]}")
    print(f"ratio replay/floor: {best / floor:.2f}x (target <= {TARGET:.0f}x)")


def bench_sim(args: argparse.Namespace, work: Path) -> None:
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
    print(f"ratio replay/floor: {best / floor:.2f}x (target <= {TARGET:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=("sim", "short", "startup"), default="sim")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="sim: decode processes, as `chainsight replay --workers`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as work:
        (bench_sim if args.shape == "sim" else bench_short)(args, Path(work))


if __name__ == "__main__":
    main()
