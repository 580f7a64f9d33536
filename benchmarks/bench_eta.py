"""ETA accuracy against the baseline, the cost of predicting and learning, and replay throughput
with ETAs on and off.

1. Accuracy: the `eta` scenario (two days of trips departing at every hour, rush hours, stops,
   busy destination docks) is replayed with its fences (`replay --eta-out`). The ETAs made
   between 25% and 75% of each trip's time (departure to the delivered scan), after the first
   200 deliveries (warm-up), are compared with the true arrival, and with the baseline for the
   same moments: the distance left (the engine's `remaining_km`) ÷ the lane's average speed
   over the deliveries before that moment (route length ÷ departure-to-delivery time, from
   the simulator's ground truth). Prints both MAEs (target: the model's >= 30% lower), MAPE,
   errors by hours out, and the engine's own live accuracy figures.
2. Cost: µs per prediction (features and prediction, batched as the rule makes them, and one
   at a time) and per learned sample (River `learn_one` and the encodings).
   The candidates: the samples the engine learned from in (1), in delivery order, after the
   warm-up, each predicted before it is learned (progressive validation) by the chosen
   pipeline and by the other River candidates (a Hoeffding tree, an adaptive random forest),
   with the MAE of the corrected minutes left and the µs per learn and prediction.
3. Throughput: replay of the default scenario (as bench_replay.py: decode processes ahead of
   the engine), best of N runs, with the default settings (ETAs on) and with the setting
   `eta = false` (CHAINSIGHT_ETA=false): ETAs off (target: on within 15% of off).

    .venv/bin/python benchmarks/bench_eta.py [--shipments 1500] [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from river import forest, preprocessing, tree

from chainsight.config import load_settings
from chainsight.contract.times import parse_time
from chainsight.engine.core import Engine
from chainsight.eta.accuracy import BUCKET_NAMES, BUCKETS_H
from chainsight.eta.model import FEATURES, EtaModel, regressor
from chainsight.geofence import FenceSet
from chainsight.runtimes.replay import default_workers, replay
from chainsight.sim import simulate

WARM_UP = 200


def accuracy(args: argparse.Namespace, work: Path) -> tuple[EtaModel, list]:
    sim = simulate("eta", shipments=args.shipments)
    events, fences, eta_out = work / "eta-events.jsonl", work / "fences.geojson", work / "eta.jsonl"
    n = sim.write_jsonl(events)
    sim.write_fences(fences)
    engine = Engine(fences=FenceSet.from_file(fences))
    learned = []  # what each delivery teaches, as the model queues it: (features, minutes)
    queue = engine.eta_model.queue

    def recorded(at, shard, x, minutes, *rest):
        learned.append((x, minutes))
        queue(at, shard, x, minutes, *rest)

    engine.eta_model.queue = recorded
    result = replay(events, engine, eta_out=eta_out, workers=args.workers)
    print(f"eta scenario: {n:,} lines, {args.shipments:,} shipments, replayed in "
          f"{result.seconds:.1f} s")
    trips = [t for t in sim.ground_truth()["trips"]
             if not t["cancelled"] and t["delivered_in_window"]]
    depart = {t["shipment_id"]: parse_time(t["departed_at"]) for t in trips}
    arrive = {t["shipment_id"]: parse_time(t["delivered_at"]) for t in trips}
    lane = {t["shipment_id"]: t["route_id"] for t in trips}
    done = sorted(trips, key=lambda t: arrive[t["shipment_id"]])
    warm_until = arrive[done[WARM_UP - 1]["shipment_id"]]
    records = [orjson.loads(line) for line in eta_out.read_bytes().splitlines()]
    rows = []
    for r in records:
        s = r["shipment_id"]
        if s not in arrive:
            continue
        at, eta = parse_time(r["at"]), parse_time(r["eta"])
        frac = (at - depart[s]) / (arrive[s] - depart[s])
        if at > warm_until and 0.25 <= frac <= 0.75:
            rows.append((at, s, eta, r["remaining_km"]))
    rows.sort()
    # the baseline: each lane's km and hours over the deliveries before each ETA
    lane_km: dict[str, float] = {}
    lane_h: dict[str, float] = {}
    k = 0
    baseline = np.empty(len(rows))
    for j, (at, s, _, km) in enumerate(rows):
        while k < len(done) and arrive[done[k]["shipment_id"]] < at:
            t = done[k]
            s_done = t["shipment_id"]
            name, hours = t["route_id"], (arrive[s_done] - depart[s_done]) / 3.6e6
            lane_km[name] = lane_km.get(name, 0.0) + t["route_km"]
            lane_h[name] = lane_h.get(name, 0.0) + hours
            k += 1
        name = lane[s]
        kmh = lane_km[name] / lane_h[name] if name in lane_h else \
            sum(lane_km.values()) / sum(lane_h.values())
        baseline[j] = at + km / kmh * 3.6e6
    at = np.array([r[0] for r in rows])
    eta = np.array([r[2] for r in rows])
    actual = np.array([arrive[r[1]] for r in rows])
    left_min = (actual - at) / 60_000
    err_model, err_base = np.abs(eta - actual) / 60_000, np.abs(baseline - actual) / 60_000
    print(f"ETAs at 25-75% of trip time after {WARM_UP} deliveries: {len(rows):,} "
          f"(of {len(records):,} published, {len(trips):,} trips delivered)")
    mae_m, mae_b = err_model.mean(), err_base.mean()
    print(f"  MAE   model {mae_m:6.2f} min   baseline {mae_b:6.2f} min   "
          f"model {100 * (1 - mae_m / mae_b):.1f}% lower (target >= 30%)")
    print(f"  MAPE  model {100 * np.mean(err_model / left_min):6.1f} %     baseline "
          f"{100 * np.mean(err_base / left_min):6.1f} %")
    print(f"  within ±30 min: model {100 * np.mean(err_model <= 30):.1f}%, baseline "
          f"{100 * np.mean(err_base <= 30):.1f}%")
    bucket = np.searchsorted(BUCKETS_H, left_min / 60, side="right")
    for k, name in enumerate(BUCKET_NAMES):
        sel = bucket == k
        if sel.any():
            print(f"  {name:>5} out: {sel.sum():6,} ETAs, MAE model {err_model[sel].mean():6.2f} "
                  f"min, baseline {err_base[sel].mean():6.2f} min; MAPE model "
                  f"{100 * np.mean(err_model[sel] / left_min[sel]):5.1f}%, baseline "
                  f"{100 * np.mean(err_base[sel] / left_min[sel]):5.1f}%")
    live = engine.metrics()
    print("  engine's live accuracy (every ETA scored at delivery, no warm-up excluded): MAE "
          f"model {live.get('eta_accuracy.model.mae_min')} min, baseline "
          f"{live.get('eta_accuracy.baseline.mae_min')} min over "
          f"{live.get('eta_accuracy.samples'):,} ETAs")
    return engine.eta_model, learned


def cost(model_from: EtaModel) -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    at = rng.integers(1_700_000_000_000, 1_700_100_000_000, n)
    cols = dict(fix_ts=at - rng.integers(0, 30_000, n), remaining_km=rng.uniform(1, 80, n),
                lane=rng.integers(0, max(1, len(model_from.lanes.index)), n),
                speed_kmh=rng.uniform(0, 90, n), stopped=rng.integers(0, 2, n).astype(float),
                stop_ms=rng.uniform(0, 6e5, n), dwell_ms=rng.uniform(0, 2e6, n),
                stops=rng.integers(0, 6, n).astype(float), depart=at - 3_600_000,
                start_km=np.full(n, 80.0), promised=at + 7_200_000,
                temp_controlled=rng.integers(0, 2, n).astype(float))

    shard = np.zeros(n, np.int64)

    def predict(lo: int, hi: int) -> np.ndarray:
        x = model_from.features(shard[lo:hi], at[lo:hi], **{k: v[lo:hi] for k, v in cols.items()})
        return model_from.predict_minutes(x, shard[lo:hi])

    for size in (1000, 1):
        batches = n // size if size > 1 else 2000
        started = time.perf_counter()
        for b in range(batches):
            predict(b * size, (b + 1) * size)
        us = (time.perf_counter() - started) / (batches * size) * 1e6
        print(f"  prediction, in batches of {size:>4}: {us:8.2f} µs each")
    x = model_from.features(shard, at, **cols)
    minutes = x[:, 0] * rng.uniform(0.8, 1.4, n)
    model = EtaModel()
    hour = (at // 3_600_000) % 24
    started = time.perf_counter()
    for lo in range(0, 4000, 8):  # trips of 8 learned samples, as the rule learns them
        model.learn(0, x[lo:lo + 8], minutes[lo:lo + 8], int(cols["lane"][lo]), hour[lo:lo + 8])
    print(f"  learning: {(time.perf_counter() - started) / 4000 * 1e6:8.2f} µs per sample "
          f"({len(FEATURES)} features)")


def candidates(learned: list) -> None:
    """Progressive validation of River regressors of the correction on the learned samples."""
    trips = learned[WARM_UP:]
    options = {
        "StandardScaler | LinearRegression (chosen)": regressor,
        "StandardScaler | HoeffdingTreeRegressor": lambda: preprocessing.StandardScaler()
        | tree.HoeffdingTreeRegressor(leaf_prediction="model"),
        "ARFRegressor (10 trees), on 1 trip in 4": lambda: forest.ARFRegressor(n_models=10,
                                                                              seed=1),
    }
    for name, make in options.items():
        model, errors, learn_s, predict_s, n = make(), [], 0.0, 0.0, 0
        for x, minutes in learned[:WARM_UP]:
            for row, y in zip(x.tolist(), (minutes - x[:, 0]).tolist(), strict=True):
                model.learn_one(dict(zip(FEATURES, row, strict=True)), y)
        step = 4 if name.startswith("ARF") else 1
        for x, minutes in trips[::step]:
            rows = [dict(zip(FEATURES, row, strict=True)) for row in x.tolist()]
            started = time.perf_counter()
            guess = [model.predict_one(row) for row in rows]
            predict_s += time.perf_counter() - started
            errors += np.abs(x[:, 0] + np.array(guess) - minutes).tolist()
            started = time.perf_counter()
            for row, y in zip(rows, (minutes - x[:, 0]).tolist(), strict=True):
                model.learn_one(row, y)
            learn_s += time.perf_counter() - started
            n += len(rows)
        print(f"  {name:45} MAE {np.mean(errors):6.2f} min; learn {learn_s / n * 1e6:7.1f} µs,"
              f" predict {predict_s / n * 1e6:6.1f} µs per sample")
    base = np.concatenate([np.abs(x[:, 0] - minutes) for x, minutes in trips])
    print(f"  {'baseline (no correction)':45} MAE {base.mean():6.2f} min")


def throughput(args: argparse.Namespace, work: Path) -> None:
    events = work / "default-events.jsonl"
    sim = simulate("default", shipments=max(1, args.events // 250), seed=11)
    n = sim.write_jsonl(events)
    Engine()  # warm the Numba cache outside the timings
    settings = {"off": load_settings(eta=False), "on": load_settings()}
    wall: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.runs):  # interleaved, so that a busy machine slows both alike
        for label in ("off", "on"):
            started = time.process_time()
            result = replay(events, Engine(settings[label]), work / "alerts.jsonl",
                            work / "dlq.jsonl", work / "state.json", workers=args.workers,
                            eta_out=work / "eta-default.jsonl" if label == "on" else None)
            cpu[label].append(time.process_time() - started)
            wall[label].append(result.seconds)
    for label in ("off", "on"):
        best = min(wall[label])
        print(f"  ETA {label:>3}: {best:.2f} s ({result.events / best:,.0f} events/s; runs "
              f"{', '.join(f'{t:.2f}' for t in wall[label])} s); engine process CPU "
              f"{min(cpu[label]):.2f} s")
    ratio_wall = 100 * (min(wall["on"]) / min(wall["off"]) - 1)
    ratio_cpu = 100 * (min(cpu["on"]) / min(cpu["off"]) - 1)
    print(f"  replay {n:,} lines: ETA on takes {ratio_wall:+.1f}% wall time vs off (target "
          f"within 15%), {ratio_cpu:+.1f}% CPU time of the engine's process")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shipments", type=int, default=1500)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-eta-"))
    model, learned = accuracy(args, work)
    print("cost (the model after the eta scenario):")
    cost(model)
    print(f"candidates, on the {len(learned) - WARM_UP:,} deliveries learned after the warm-up "
          "(progressive validation of the samples learned from):")
    candidates(learned)
    if not args.skip_throughput:
        print("replay throughput, default scenario:")
        throughput(args, work)


if __name__ == "__main__":
    main()
