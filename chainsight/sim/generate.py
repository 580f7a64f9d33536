"""Builds all events of a scenario as columns (NumPy), in arrival order, plus the ground truth."""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from chainsight.contract.times import iso

from .business import business_events
from .faults import Spans, duplicate_picks, plan_faults
from .fleet import Fleet, plan_fleet, rng_for
from .geo import offset
from .scenario import PROFILES, Scenario
from .streams import gps_stream, sensor_stream, span
from .truth import TRUTH_NOTES
from .world import World

GPS, SENSOR, MISC = 0, 1, 2
GPS_COLS = ("num", "seq", "ts", "lat", "lon", "speed", "heading", "acc")
SENSOR_COLS = ("num", "seq", "ts", "temp", "hum", "door", "batt")
FAULT_KINDS = ("excursion", "short_excursion", "sensor_silence", "clock_skew", "offline_buffer",
               "duplicate", "gps_outlier")

__all__ = ["GPS", "MISC", "SENSOR", "Built", "build", "rng_for"]


@dataclass
class Built:
    """Everything a Simulation needs."""

    scenario: Scenario
    world: World
    gps: dict[str, np.ndarray]
    sensor: dict[str, np.ndarray]
    misc: list[dict[str, Any]]
    misc_lines: list[bytes]
    codes: np.ndarray  # arrival order: table code per line
    rows: np.ndarray  # arrival order: row in that table
    arrival: np.ndarray  # arrival order: arrival time (epoch ms)
    truth: dict[str, Any]
    id_digits: int
    seq_digits: int
    ids: dict[str, list[str]] = field(default_factory=dict)


def build(scn: Scenario) -> Built:
    """Generate the world, all shipments, their device streams, faults and the truth."""
    was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived objects: skip the cyclic collector meanwhile
    try:
        return _build(scn)
    finally:
        if was_enabled:
            gc.enable()


def _build(scn: Scenario) -> Built:
    f = plan_fleet(scn)
    ri = int(round(scn.sensor_interval_s * 1000))
    end = scn.end_ms
    spans = Spans(f.tl["loaded"], np.minimum(f.tl["delivered"], end - 1),
                  f.tl["in_transit"] + 2 * ri, np.minimum(f.tl["arrive"], end - 1),
                  ~f.cancelled & (f.tl["loaded"] < end))
    plan = plan_faults(scn, f.profiles, spans, rng_for(scn.seed, 4))
    frng, vrng = rng_for(scn.seed, 6), rng_for(scn.seed, 7)
    gps, faults = gps_stream(f, plan, vrng, frng)
    sensor, s_faults, excursions = sensor_stream(f, plan, vrng, frng)
    faults += s_faults
    seq_max = max([int(c["seq"].max()) + 1 for c in (gps, sensor) if c["seq"].size] or [0])
    sw = max(6, len(str(seq_max)))
    misc, misc_true, misc_arr, trips = business_events(f)

    grng = rng_for(scn.seed, 5)
    faults += _gps_outliers(f, gps, sw, grng)
    n_g, n_s, n_m = gps["ts"].size, sensor["ts"].size, len(misc)
    codes = np.concatenate([np.full(n_g, GPS), np.full(n_s, SENSOR), np.full(n_m, MISC)])
    rows = np.concatenate([np.arange(n_g), np.arange(n_s), np.arange(n_m)])
    arrival = np.concatenate([gps["arrival"], sensor["arrival"], misc_arr])
    dups = duplicate_picks(codes.size, scn.duplicate_rate, grng)
    delay = grng.integers(500, 120_000, dups.size)
    faults += _duplicate_records(f, gps, sensor, misc, misc_true, codes[dups], rows[dups],
                                 delay, sw)
    codes = np.concatenate([codes, codes[dups]]).astype(np.uint8)
    rows = np.concatenate([rows, rows[dups]])
    arrival = np.concatenate([arrival, arrival[dups] + delay])
    order = np.argsort(arrival, kind="stable")
    codes, rows, arrival = codes[order], rows[order], arrival[order]
    gps, sensor = _arrival_layout(codes, rows, GPS, gps), _arrival_layout(codes, rows, SENSOR,
                                                                          sensor)

    counts = {"gps": n_g, "sensor": n_s,
              "scan": sum(1 for e in misc if e["type"] == "scan"),
              "order": sum(1 for e in misc if e["type"] == "order"),
              "duplicates": int(dups.size), "lines": int(codes.size)}
    truth = _truth(scn, plan.requested, counts, faults, excursions, trips)
    return Built(scn, f.world, {k: gps[k] for k in GPS_COLS}, {k: sensor[k] for k in SENSOR_COLS},
                 misc, [orjson.dumps(ev) + b"\n" for ev in misc], codes, rows, arrival, truth,
                 f.id_digits, sw, {"shp": f.shp, "trk": f.trk, "rfr": f.rfr})


def _arrival_layout(codes: np.ndarray, rows: np.ndarray, code: int,
                    tab: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reorder a table's rows by first arrival (remapping ``rows`` in place), so rendering
    reads the columns sequentially."""
    sel = np.flatnonzero(codes == code)
    r = rows[sel]
    _, first = np.unique(r, return_index=True)
    perm = r[np.sort(first)]
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    rows[sel] = inv[r]
    return {k: v[perm] for k, v in tab.items()}


def _gps_outliers(f: Fleet, gps: dict[str, np.ndarray], sw: int,
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    """Displace a few fixes by 0.5-5 km (in place); their truth records."""
    n_g = gps["ts"].size
    k = int(rng.binomial(n_g, f.scn.gps_outlier_rate)) if n_g else 0
    rows = np.sort(rng.choice(n_g, k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    dist = rng.uniform(500, 5000, k)
    brg = rng.uniform(0, 2 * np.pi, k)
    la, lo = offset(gps["lat"][rows] / 1e6, gps["lon"][rows] / 1e6,
                    dist * np.cos(brg), dist * np.sin(brg))
    gps["lat"][rows] = np.rint(la * 1e6).astype(np.int64)
    gps["lon"][rows] = np.rint(lo * 1e6).astype(np.int64)
    out = []
    for r, dm in zip(rows.tolist(), dist.tolist(), strict=True):
        num, t = int(gps["num"][r]), int(gps["true_ts"][r])
        out.append({"type": "gps_outlier", "shipment_id": f.shp[num], "device_id": f.trk[num],
                    "device_kind": "tracker", **span(t, t),
                    "event_id": f"{f.trk[num]}-{int(gps['seq'][r]):0{sw}d}",
                    "ts": iso(int(gps["ts"][r])), "offset_m": round(dm, 1)})
    return out


def _duplicate_records(f: Fleet, gps: dict[str, np.ndarray], sensor: dict[str, np.ndarray],
                       misc: list[dict[str, Any]], misc_true: np.ndarray, codes: np.ndarray,
                       rows: np.ndarray, delay: np.ndarray, sw: int) -> list[dict[str, Any]]:
    out = []
    for c, row, dl in zip(codes.tolist(), rows.tolist(), delay.tolist(), strict=True):
        if c == MISC:
            ev = misc[row]
            eid, dev, sid, t = ev["event_id"], None, ev["shipment_id"], int(misc_true[row])
            etype, ts = ev["type"], iso(t)
        else:
            tab = gps if c == GPS else sensor
            num = int(tab["num"][row])
            dev = (f.trk if c == GPS else f.rfr)[num]
            eid = f"{dev}-{int(tab['seq'][row]):0{sw}d}"
            sid, t = f.shp[num], int(tab["true_ts"][row])
            etype, ts = ("gps" if c == GPS else "sensor"), iso(int(tab["ts"][row]))
        out.append({"type": "duplicate", "shipment_id": sid, "device_id": dev,
                    "device_kind": {GPS: "tracker", SENSOR: "sensor"}.get(c, "business"),
                    **span(t, t), "event_id": eid, "event_type": etype, "ts": ts,
                    "delay_s": dl / 1000})
    return out


def _truth(scn: Scenario, requested: dict[str, int], counts: dict[str, int],
           faults: list[dict[str, Any]], excursions: list[dict[str, Any]],
           trips: list[dict[str, Any]]) -> dict[str, Any]:
    faults.sort(key=lambda x: (x["start_ms"], x["type"], x["device_id"] or x["shipment_id"]))
    for j, x in enumerate(faults):
        x["fault_id"] = f"F{j + 1:05d}"
    excursions.sort(key=lambda x: x["start_ms"])
    for j, x in enumerate(excursions):
        x["fault_id"] = f"X{j + 1:04d}"
    injected = dict.fromkeys(FAULT_KINDS, 0)
    for x in faults:
        injected[x["type"]] += 1
    for x in excursions:
        injected["excursion" if x["should_alert"] else "short_excursion"] += 1
    return {
        "version": 1,
        "seed": scn.seed,
        "scenario": scn.to_dict(),
        "window": {"start": iso(scn.start_ms), "end": iso(scn.end_ms)},
        "profiles": {k: dataclasses.asdict(p) for k, p in PROFILES.items()},
        "counts": counts,
        "requested_faults": requested,
        "injected_faults": injected,
        "notes": TRUTH_NOTES,
        "excursions": excursions,
        "faults": faults,
        "trips": trips,
    }
