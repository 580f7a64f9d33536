"""Every injected fault shows up in the stream as described, and the ground truth matches it."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from chainsight.geofence.geodesy import geodesic_m
from chainsight.sim import PROFILES, parse_time, simulate

MIN = 60_000


@pytest.fixture(scope="module")
def truth(sim):
    return sim.ground_truth()


@pytest.fixture(scope="module")
def by_device(events):
    """device_id -> [(stream position, event)] in arrival order, duplicates removed."""
    out = defaultdict(list)
    seen = set()
    for i, e in enumerate(events):
        if "device_id" in e and e["event_id"] not in seen:
            seen.add(e["event_id"])
            out[e["device_id"]].append((i, e))
    return out


def faults(truth, kind):
    return [f for f in truth["faults"] if f["type"] == kind]


def ms(v):
    return parse_time(v)


def test_every_fault_kind_is_injected(truth):
    inj = truth["injected_faults"]
    req = truth["requested_faults"]
    assert inj["excursion"] == req["excursion"] == 3
    assert inj["short_excursion"] == req["short_excursion"] == 3
    assert inj["sensor_silence"] == req["silence"] == 2
    assert inj["clock_skew"] == req["clock_skew"] == 3
    assert inj["offline_buffer"] == req["offline"] == 2
    assert inj["duplicate"] > 0 and inj["gps_outlier"] > 0
    assert truth["seed"] == 3 and truth["scenario"]["shipments"] == 80
    assert truth["notes"] and truth["window"]["start"] == "2026-11-25T08:00:00Z"


def test_duplicates_repeat_the_same_line(sim, truth):
    lines = b"".join(sim.iter_byte_blocks()).split(b"\n")[:-1]
    by_id = defaultdict(list)
    for line in lines:
        eid = line.split(b'"event_id":"', 1)[1].split(b'"', 1)[0].decode()
        by_id[eid].append(line)
    dups = faults(truth, "duplicate")
    assert dups
    for f in dups:
        copies = by_id[f["event_id"]]
        assert len(copies) == 2 and copies[0] == copies[1]


def test_silence_gap_in_device_readings(truth, by_device, sim):
    interval = sim.scenario.sensor_interval_s * 1000
    for f in faults(truth, "sensor_silence"):
        ts = np.array([ms(e["ts"]) for _, e in by_device[f["device_id"]]])
        gap = (ts >= f["start_ms"]) & (ts <= f["end_ms"])
        assert not gap.any()
        before = ts[ts < f["start_ms"]].max()
        after = ts[ts > f["end_ms"]].min()
        assert before == ms(f["last_reading_before"]) and after == ms(f["first_reading_after"])
        assert after - before > 10 * MIN and f["should_alert"]
        assert ms(f["expected_alert_at"]) == before + 10 * MIN
        # the only gap of that device; otherwise it reports every interval
        d = np.diff(np.sort(ts))
        assert (d > interval * 1.5).sum() == 1
        trip = next(t for t in truth["trips"] if t["shipment_id"] == f["shipment_id"])
        assert ms(trip["departed_at"]) < before and after <= trip["arrival_at_ms"]  # in transit


def test_clock_skew_shifts_device_timestamps(truth, by_device, sim):
    arrival = sim.arrival_ms()
    sk = faults(truth, "clock_skew")
    assert {f["device_kind"] for f in sk} <= {"tracker", "sensor"}
    for f in sk:
        rows = by_device[f["device_id"]]
        ts = np.array([ms(e["ts"]) for _, e in rows])
        skew = round(f["skew_s"] * 1000)
        assert ts.min() == f["start_ms"] + skew and ts.max() == f["end_ms"] + skew
        lag = arrival[[i for i, _ in rows]] - (ts - skew)  # vs true time: latency only
        assert 0 <= lag.min() and lag.max() < 3000
        assert abs(skew) >= 30_000
        assert f["skew_s"] <= sim.scenario.clock_skew_max_ahead_s  # ahead-skews are capped
        assert f["beyond_allowed_lateness"] == (skew < -300_000)


def test_offline_burst_arrives_late_and_out_of_order(truth, by_device, sim, events):
    arrival = sim.arrival_ms()
    for f in faults(truth, "offline_buffer"):
        rows = by_device[f["device_id"]]
        held = [(i, e) for i, e in rows if f["start_ms"] <= ms(e["ts"]) <= f["end_ms"]]
        assert len(held) == f["events"]
        pos = [i for i, _ in held]
        assert pos == sorted(pos) and pos[-1] - pos[0] < 3 * len(pos)  # one burst, in order
        assert arrival[pos[0]] == f["delivered_at_ms"]
        # events with later event time from the same device arrived before the burst
        later = [i for i, e in rows if ms(e["ts"]) > f["end_ms"] and i < pos[0]]
        assert later
        # and the stream as a whole is out of event-time order there
        assert any(ms(events[j]["ts"]) > ms(held[0][1]["ts"]) for j in range(pos[0]))
        lateness = arrival[pos] - np.array([ms(e["ts"]) for _, e in held])
        assert lateness.max() / 1000 == pytest.approx(f["max_lateness_s"])
        assert (lateness > 5 * MIN).sum() == f["beyond_allowed_lateness"]


def test_excursions_match_readings(truth, by_device):
    exc = truth["excursions"]
    assert {e["should_alert"] for e in exc} == {True, False}
    skewed = {f["device_id"] for f in faults(truth, "clock_skew")}
    for x in exc:
        p = PROFILES[x["profile"]]
        assert (x["min_c"], x["max_c"], x["excursion_min"]) == (p.min_c, p.max_c, p.excursion_min)
        assert x["device_id"] not in skewed
        rd = [(ms(e["ts"]), e["temp_c"]) for _, e in by_device[x["device_id"]]]
        rd.sort()
        t = np.array([a for a, _ in rd])
        v = np.array([b for _, b in rd])
        inside = (v >= p.min_c) & (v <= p.max_c)
        run = (t >= x["start_ms"]) & (t <= x["end_ms"])
        assert run.sum() == x["readings"] and not inside[run].any()
        i0 = int(np.flatnonzero(run)[0])
        assert inside[i0 - 1]  # inside just before
        assert t[i0 + x["readings"]] == ms(x["resolved_at"]) and inside[i0 + x["readings"]]
        dur = (x["end_ms"] - x["start_ms"]) / MIN
        assert dur == pytest.approx(x["duration_min"])
        if x["should_alert"]:
            assert dur >= 1.5 * p.excursion_min
            exp = t[(t - x["start_ms"]) >= p.excursion_min * MIN][0]
            assert ms(x["expected_open_at"]) == exp
        else:
            assert dur <= 0.6 * p.excursion_min and x["expected_open_at"] is None
        peak = v[run].max() if x["direction"] == "high" else v[run].min()
        assert peak == pytest.approx(x["peak_c"], abs=0.011)


def test_no_readings_outside_profile_except_truth(truth, events):
    prof = {}
    for e in events:
        if e["type"] == "order":
            prof[e["shipment_id"]] = PROFILES[e["product_profile"]]
    spans = defaultdict(list)
    for x in truth["excursions"]:
        spans[x["device_id"]].append((x["start_ms"], x["end_ms"]))
    for e in events:
        if e["type"] != "sensor":
            continue
        p = prof[e["shipment_id"]]
        if not p.min_c <= e["temp_c"] <= p.max_c:
            t = ms(e["ts"])
            assert any(a <= t <= b for a, b in spans[e["device_id"]]), e


def test_gps_outliers_are_displaced(truth, by_device):
    outl = faults(truth, "gps_outlier")
    assert outl
    for f in outl:
        rows = [e for _, e in by_device[f["device_id"]]]
        k = next(i for i, e in enumerate(rows) if e["event_id"] == f["event_id"])
        nb = rows[k - 1] if k > 0 else rows[k + 1]
        d = float(geodesic_m(rows[k]["lon"], rows[k]["lat"], nb["lon"], nb["lat"]))
        assert d > 200 and abs(d - f["offset_m"]) < 400


def test_trip_truth_matches_fixes_and_scans(truth, events, sim):
    sites = {f["properties"]["fence_id"]: f for f in sim.fences()["features"]}
    skew = {f["device_id"]: round(f["skew_s"] * 1000) for f in faults(truth, "clock_skew")}
    outliers = {f["event_id"] for f in faults(truth, "gps_outlier")}
    fixes = defaultdict(list)
    scans = defaultdict(dict)
    for e in events:
        if e["type"] == "gps" and e["event_id"] not in outliers:
            fixes[e["device_id"]].append(e)
        elif e["type"] == "scan":
            scans[e["shipment_id"]][e["step"]] = ms(e["ts"])
    checked = 0
    for t in truth["trips"]:
        if t["cancelled"]:
            assert not fixes.get(t["tracker_id"]) and t["shipment_id"] not in scans
            continue
        if not t["delivered_in_window"]:
            continue
        site = sites[t["destination_id"]]
        lon, lat = site["geometry"]["coordinates"]
        s = skew.get(t["tracker_id"], 0)
        fx = sorted(fixes[t["tracker_id"]], key=lambda e: e["ts"])
        arr = t["arrival_at_ms"]
        after = [e for e in fx if ms(e["ts"]) - s >= arr]
        before = [e for e in fx if ms(e["ts"]) - s < arr]
        assert after and before
        radius = site["properties"]["radius_m"]
        assert all(geodesic_m(e["lon"], e["lat"], lon, lat) < radius for e in after)
        assert after[-1] is fx[-1]  # the last fixes are at the destination
        assert geodesic_m(before[0]["lon"], before[0]["lat"], lon, lat) > radius
        assert ms(t["fence_entered_at"]) <= arr
        sc = scans[t["shipment_id"]]
        assert sc["loaded"] < ms(t["departed_at"]) < arr < sc["unloaded"] < sc["delivered"]
        assert sc["delivered"] == ms(t["delivered_at"])
        assert t["late"] == (arr > ms(t["promised_by"]))
        checked += 1
    assert checked > 20


def test_sensor_readings_span_loading_to_delivery(truth, events):
    first, last = {}, {}
    for e in events:
        if e["type"] == "sensor":
            t = ms(e["ts"])
            first[e["shipment_id"]] = min(first.get(e["shipment_id"], t), t)
            last[e["shipment_id"]] = max(last.get(e["shipment_id"], t), t)
    skewed = {f["shipment_id"] for f in faults(truth, "clock_skew") if f["device_kind"] == "sensor"}
    for t in truth["trips"]:
        sid = t["shipment_id"]
        if t["cancelled"] or not t["delivered_in_window"] or sid in skewed:
            continue
        assert ms(t["loaded_at"]) <= first[sid] < ms(t["loaded_at"]) + 60_000
        assert ms(t["delivered_at"]) - 60_000 < last[sid] <= ms(t["delivered_at"])


def test_fault_counts_follow_rates():
    s = simulate("smoke", shipments=120, excursion_count=None, excursion_rate=0.05,
                 short_excursion_count=0, silence_count=0, clock_skew_count=0, offline_count=0,
                 duplicate_rate=0.0, gps_outlier_rate=0.0)
    inj = s.ground_truth()["injected_faults"]
    assert s.ground_truth()["requested_faults"]["excursion"] == 6
    assert inj["excursion"] == 6
    assert inj["duplicate"] == inj["gps_outlier"] == inj["sensor_silence"] == 0
    assert inj["short_excursion"] == inj["clock_skew"] == inj["offline_buffer"] == 0
    assert s.counts()["duplicates"] == 0
