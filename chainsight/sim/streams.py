"""Device streams (GPS trackers, reefer sensors) as columns, with per-device faults applied."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from chainsight.contract.times import iso

from .faults import FaultPlan, place_run
from .fleet import MIN, Fleet
from .reefers import Doors, excursion_overlay, fleet_reefers
from .scenario import PROFILES
from .trucks import Track, expand, fleet_gps
from .truth import SILENT_AFTER_MS

ALLOWED_LATENESS_MS = 5 * MIN  # the contract's default allowed_lateness


def span(a: int, b: int) -> dict[str, Any]:
    """Truth fields for an event-time span."""
    return {"start": iso(a), "end": iso(b), "start_ms": a, "end_ms": b}


def _skew_record(dev: str, sid: str, kind: str, skew_ms: int, t: np.ndarray) -> dict[str, Any]:
    return {"type": "clock_skew", "shipment_id": sid, "device_id": dev, "device_kind": kind,
            **span(int(t[0]), int(t[-1])), "skew_s": skew_ms / 1000,
            "ahead": skew_ms > 0, "beyond_allowed_lateness": -skew_ms > ALLOWED_LATENESS_MS}


def gps_stream(f: Fleet, plan: FaultPlan, vrng: np.random.Generator,
               frng: np.random.Generator) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Every tracker's fixes (columns incl. ``arrival`` and ``true_ts``) and their faults."""
    scn, tl, act = f.scn, f.tl, f.live
    end = scn.end_ms
    gi = int(round(scn.gps_interval_s * 1000))
    owner, t, offs, cnt = expand(tl["truck_in"][act] + vrng.integers(0, gi, act.size),
                                 np.minimum(tl["gps_end"][act], end), gi)
    if f.drives is not None:
        tr = fleet_gps([f.routes[i] for i in act], f.drives, owner, t, tl["shipped"][act],
                       f.dock_o[act], f.dock_d[act], scn.gps_accuracy_m, vrng)
    else:
        z = np.zeros(0, dtype=np.int64)
        tr = Track(z, z, z, z, z)
    ts = t.copy()
    arrival = t + vrng.integers(300, 2500, t.size)
    faults: list[dict[str, Any]] = []
    transit_hi = np.minimum(tl["arrive"], end - 1)
    for j, i in enumerate(act.tolist()):
        tf = plan.tracker.get(i)
        if not tf or cnt[j] == 0:
            continue
        sl = slice(int(offs[j]), int(offs[j] + cnt[j]))
        tt, num = t[sl], i + 1
        if tf[0] == "tracker_skew":
            ts[sl] += tf[1]["skew_ms"]
            faults.append(_skew_record(f.trk[num], f.shp[num], "tracker", tf[1]["skew_ms"], tt))
            continue
        k = max(1, math.ceil(tf[1]["duration_ms"] / gi))
        a = place_run(tt, int(tl["in_transit"][i]) + gi, int(transit_hi[i]) - gi, k, frng,
                      pad=1)
        if a is None:
            continue
        burst = int(tt[a + k + 1]) + int(frng.integers(1000, 20_000))
        arr = arrival[sl]
        arr[a : a + k + 1] = burst + np.arange(k + 1) * 5
        late = arr[a : a + k + 1] - tt[a : a + k + 1]
        faults.append({
            "type": "offline_buffer", "shipment_id": f.shp[num], "device_id": f.trk[num],
            "device_kind": "tracker", **span(int(tt[a]), int(tt[a + k])),
            "delivered_at": iso(burst), "delivered_at_ms": burst, "events": k + 1,
            "max_lateness_s": int(late.max()) / 1000,
            "beyond_allowed_lateness": int((late > ALLOWED_LATENESS_MS).sum()),
        })
    cols = {"num": act[owner] + 1, "seq": np.arange(t.size) - offs[owner], "ts": ts,
            "lat": tr.lat_e6, "lon": tr.lon_e6, "speed": tr.speed_e1, "heading": tr.heading_e1,
            "acc": tr.accuracy_e1, "arrival": arrival, "true_ts": t}
    return cols, faults


def sensor_stream(f: Fleet, plan: FaultPlan, vrng: np.random.Generator,
                  frng: np.random.Generator
                  ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every reefer's readings (columns), their faults and their excursions."""
    scn, tl, act = f.scn, f.tl, f.live
    end = scn.end_ms
    ri = int(round(scn.sensor_interval_s * 1000))
    owner, t, offs, cnt = expand(tl["loaded"][act] + vrng.integers(0, ri, act.size),
                                 np.minimum(tl["delivered"][act] + 1, end), ri)
    depart, arrive = tl["shipped"][act], tl["arrive"][act]
    drive_min = (arrive - depart) / MIN
    n_road = np.where(drive_min > 12, vrng.poisson(scn.door_openings_per_h * drive_min / 60), 0)
    road_own = np.repeat(np.arange(act.size), n_road)
    road_start = depart[road_own] + vrng.uniform(5, np.maximum(drive_min[road_own] - 5, 5.1)) * MIN
    m = np.arange(act.size)
    unloaded = tl["unloaded"][act]
    doors = Doors(  # loading, en route, unloading
        np.concatenate([m, road_own, m]),
        np.concatenate([tl["loaded"][act] - MIN, road_start.astype(np.int64), unloaded]),
        np.concatenate([(vrng.uniform(1.5, 3.0, act.size) * MIN).astype(np.int64),
                        (vrng.uniform(40, 180, road_own.size) * 1000).astype(np.int64),
                        tl["unload_door_closed"][act] - unloaded]),
    )
    rf = fleet_reefers([f.profiles[i] for i in act], owner, t, doors, vrng)
    temp = rf.temp_c
    ts = t.copy()
    arrival = t + vrng.integers(300, 2500, t.size)
    keep = np.ones(t.size, dtype=bool)
    faults: list[dict[str, Any]] = []
    excursions: list[dict[str, Any]] = []
    transit_hi = np.minimum(tl["arrive"], end - 1)
    for j, i in enumerate(act.tolist()):
        sf = plan.sensor.get(i)
        if not sf or cnt[j] == 0:
            continue
        sl = slice(int(offs[j]), int(offs[j] + cnt[j]))
        tt, num = t[sl], i + 1
        if sf[0] in ("excursion", "short_excursion"):
            rec = excursion(sf[0] == "excursion", sf[1]["duration_ms"], f.profiles[i], tt, ri,
                            temp[sl], frng)
            if rec:
                rec.update(shipment_id=f.shp[num], device_id=f.rfr[num])
                excursions.append(rec)
        elif sf[0] == "silence":
            g = max(1, math.ceil(sf[1]["duration_ms"] / ri))
            a = place_run(tt, int(tl["in_transit"][i]) + 2 * ri, int(transit_hi[i]) - ri, g - 1,
                          frng, pad=1)
            if a is None:
                continue
            keep[sl][a : a + g] = False
            before, after = int(tt[a - 1]), int(tt[a + g])
            faults.append({
                "type": "sensor_silence", "shipment_id": f.shp[num], "device_id": f.rfr[num],
                "device_kind": "sensor", **span(int(tt[a]), int(tt[a + g - 1])),
                "missing_readings": g,
                "last_reading_before": iso(before), "first_reading_after": iso(after),
                "gap_min": (after - before) / MIN,
                "should_alert": after - before > SILENT_AFTER_MS,
                "expected_alert_at": iso(before + SILENT_AFTER_MS),
            })
        else:  # sensor_skew
            ts[sl] += sf[1]["skew_ms"]
            faults.append(_skew_record(f.rfr[num], f.shp[num], "sensor", sf[1]["skew_ms"], tt))
    cols = {"num": act[owner] + 1, "seq": np.arange(t.size) - offs[owner], "ts": ts,
            "temp": np.rint(temp * 100).astype(np.int64), "hum": rf.humidity_e1,
            "door": rf.door_open, "batt": rf.battery_e1, "arrival": arrival, "true_ts": t}
    return {k: v[keep] for k, v in cols.items()}, faults, excursions


def excursion(long: bool, duration_ms: float, prof: str, t: np.ndarray, ri: int,
              temp_c: np.ndarray, rng: np.random.Generator) -> dict[str, Any] | None:
    """Place one excursion in a reefer's readings (in place) and describe it for the truth."""
    p = PROFILES[prof]
    k = math.ceil(duration_ms / ri) if long else math.floor(duration_ms / ri)
    a = place_run(t, float(t[0]), float(t[-1]), k, rng, pad=6)
    if a is None:
        return None
    direction = "low" if prof in ("pharma_2_8", "chilled_food") and rng.random() < 0.25 else "high"
    peak = excursion_overlay(temp_c, t, a, k, prof, direction, long, rng)
    s, e = int(t[a]), int(t[a + k])
    dur_min = (e - s) / MIN
    exp_i = a + int(np.searchsorted(t[a:] - s, p.excursion_min * MIN, side="left"))
    expected = int(t[exp_i]) if long and exp_i < t.size else None
    return {
        "type": "temperature_excursion",
        "cause": "compressor_failure" if long else "short_excursion",
        **span(s, e),
        "profile": prof, "min_c": p.min_c, "max_c": p.max_c, "excursion_min": p.excursion_min,
        "direction": direction, "limit_c": p.max_c if direction == "high" else p.min_c,
        "peak_c": peak, "readings": k + 1, "duration_min": dur_min,
        "factor": dur_min / p.excursion_min, "should_alert": long,
        "expected_open_at": iso(expected) if expected is not None else None,
        "resolved_at": iso(int(t[a + k + 1])),
    }
