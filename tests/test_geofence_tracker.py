"""FenceTracker: enter / exit / dwell semantics, hysteresis, batching, fence reloads."""

import numpy as np
import pytest

from chainsight.geofence import FenceSet, FenceTracker

MIN = 60_000  # ms


def square(fid, x0, y0, x1, y1, **props):
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "properties": {"fence_id": fid, **props},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def fences(*features):
    return FenceSet.from_geojson({"type": "FeatureCollection", "features": list(features)})


YARD = square("yard", 0.0, 0.0, 0.01, 0.01, name="Yard", kind="hub", dwell_max_min=30)
DOCK = square("dock", 0.005, 0.005, 0.02, 0.02, kind="customer")
IN, BOTH, OUT = (0.002, 0.002), (0.007, 0.007), (0.05, 0.05)


def run(tracker, fixes):
    """fixes: (device, minute, (lon, lat)); returns (kind, fix, device, fence, minute)."""
    dev = np.array([f[0] for f in fixes])
    ts = np.array([f[1] * MIN for f in fixes])
    lon = np.array([f[2][0] for f in fixes])
    lat = np.array([f[2][1] for f in fixes])
    return [(t.kind, t.fix_index, t.device, t.fence_id, t.ts_ms / MIN)
            for t in tracker.update(dev, ts, lon, lat)]


def test_first_fix_inside_is_an_enter_then_exit_and_reenter():
    tr = FenceTracker(fences(YARD, DOCK))
    assert run(tr, [(0, 0, IN), (0, 1, BOTH), (0, 2, OUT), (0, 3, OUT), (0, 4, IN)]) == [
        ("geofence_enter", 0, 0, "yard", 0),
        ("geofence_enter", 1, 0, "dock", 1),
        ("geofence_exit", 2, 0, "yard", 2),
        ("geofence_exit", 2, 0, "dock", 2),
        ("geofence_enter", 4, 0, "yard", 4),
    ]
    assert tr.inside(0) == ["yard"] and tr.inside(7) == []


def test_never_inside_means_no_exit_and_devices_are_independent():
    tr = FenceTracker(fences(YARD))
    assert run(tr, [(3, 0, OUT), (1, 0, IN), (3, 1, OUT), (1, 2, IN), (3, 2, IN)]) == [
        ("geofence_enter", 1, 1, "yard", 0), ("geofence_enter", 4, 3, "yard", 2)]
    assert run(tr, [(1, 3, OUT)]) == [("geofence_exit", 0, 1, "yard", 3)]
    assert tr.inside(1) == [] and tr.inside(3) == ["yard"]


def test_transition_details():
    tr = FenceTracker(fences(YARD))
    tr.update(np.array([0]), np.array([0]), np.array([IN[0]]), np.array([IN[1]]))
    (t,) = tr.update(np.array([0]), np.array([10 * MIN]), np.array([OUT[0]]), np.array([OUT[1]]))
    assert t.details == {"fence_name": "Yard", "fence_kind": "hub", "entered_at_ms": 0,
                         "dwell_min": 10.0}


def test_dwell_fires_once_per_visit_on_a_fix():
    tr = FenceTracker(fences(YARD))  # dwell_max_min = 30
    got = run(tr, [(0, 0, IN), (0, 20, IN), (0, 35, IN), (0, 50, IN), (0, 60, OUT), (0, 61, IN),
                   (0, 100, IN)])
    assert got == [
        ("geofence_enter", 0, 0, "yard", 0),
        ("dwell_exceeded", 2, 0, "yard", 30),  # at entered + 30 min, revealed by fix 2
        ("geofence_exit", 4, 0, "yard", 60),
        ("geofence_enter", 5, 0, "yard", 61),
        ("dwell_exceeded", 6, 0, "yard", 91),
    ]


def test_dwell_fires_by_advance_without_a_fix():
    tr = FenceTracker(fences(YARD))
    run(tr, [(0, 0, IN)])
    assert tr.advance(30 * MIN - 1) == []
    (t,) = tr.advance(30 * MIN)
    assert (t.kind, t.fix_index, t.device, t.fence_id, t.ts_ms) == (
        "dwell_exceeded", -1, 0, "yard", 30 * MIN)
    assert t.details["dwell_min"] == 30 and t.details["dwell_max_min"] == 30
    assert tr.advance(90 * MIN) == [] and run(tr, [(0, 95, IN)]) == []


def test_dwell_fires_as_other_devices_move_time_on_and_not_after_exit():
    tr = FenceTracker(fences(YARD))
    got = run(tr, [(0, 0, IN), (1, 5, IN), (1, 20, OUT), (2, 31, OUT), (2, 40, OUT)])
    assert got == [("geofence_enter", 0, 0, "yard", 0), ("geofence_enter", 1, 1, "yard", 5),
                   ("geofence_exit", 2, 1, "yard", 20), ("dwell_exceeded", 3, 0, "yard", 30)]


def test_exit_at_the_deadline_comes_after_the_dwell():
    tr = FenceTracker(fences(YARD))
    assert run(tr, [(0, 0, IN), (0, 30, OUT)]) == [
        ("geofence_enter", 0, 0, "yard", 0), ("dwell_exceeded", 1, 0, "yard", 30),
        ("geofence_exit", 1, 0, "yard", 30)]


def test_batches_give_the_same_transitions_as_one_call():
    rng = np.random.default_rng(3)
    n = 3000
    dev = rng.integers(0, 20, n)
    ts = np.cumsum(rng.integers(0, 40_000, n))
    lon = rng.uniform(-0.005, 0.025, n)
    lat = rng.uniform(-0.005, 0.025, n)
    fs = fences(YARD, DOCK, square("x", 0.0, 0.01, 0.01, 0.02, dwell_max_min=1))
    one = FenceTracker(fs).update(dev, ts, lon, lat)
    split = FenceTracker(fs)
    many = []
    for lo, hi in [(0, 1), (1, 700), (700, 701), (701, 2500), (2500, n)]:
        many += [t._replace(fix_index=t.fix_index + lo)
                 for t in split.update(dev[lo:hi], ts[lo:hi], lon[lo:hi], lat[lo:hi])]
    assert one == many and len(one) > 500


def test_matches_a_plain_python_reference():
    """Random walks of many devices against a straightforward implementation of the rules."""
    rng = np.random.default_rng(4)
    fs = fences(YARD, DOCK, square("x", 0.0, 0.01, 0.01, 0.02, dwell_max_min=2))
    n = 4000
    dev = rng.integers(0, 30, n)
    ts = np.cumsum(rng.integers(0, 20_000, n))
    lon, lat = rng.uniform(-0.005, 0.025, n), rng.uniform(-0.005, 0.025, n)
    pairs = set(zip(*fs.contains(lon, lat), strict=True))
    dwell = {f: fs.dwell_max_min[f] * MIN for f in range(len(fs)) if fs.dwell_max_min[f] >= 0}
    entered, fired, expected = {}, set(), []
    for i in range(n):
        due = sorted((e + dwell[f], d, f) for (d, f), e in entered.items()
                     if f in dwell and (d, f) not in fired and e + dwell[f] <= ts[i])
        for at, d, f in due:
            fired.add((d, f))
            expected.append(("dwell_exceeded", i, d, fs.ids[f], at))
        for f in range(len(fs)):
            key, now_in = (dev[i], f), (i, f) in pairs
            if key in entered and not now_in:
                del entered[key]
                fired.discard(key)
                expected.append(("geofence_exit", i, dev[i], fs.ids[f], ts[i]))
        for f in range(len(fs)):
            key = (dev[i], f)
            if (i, f) in pairs and key not in entered:
                entered[key] = ts[i]
                expected.append(("geofence_enter", i, dev[i], fs.ids[f], ts[i]))
    got = [(t.kind, t.fix_index, t.device, t.fence_id, t.ts_ms)
           for t in FenceTracker(fs).update(dev, ts, lon, lat)]
    assert got == expected


# --- hysteresis -----------------------------------------------------------------------------

EDGE_IN, EDGE_OUT = (0.01 - 1e-5, 0.005), (0.01 + 1e-5, 0.005)  # about 1 m either side


def test_min_fixes_suppresses_jitter():
    tr = FenceTracker(fences(YARD), min_fixes=3)
    jitter = [(0, m, EDGE_IN if m % 2 else EDGE_OUT) for m in range(11)]
    assert run(tr, jitter) == []
    assert run(tr, [(0, 11, IN), (0, 11.5, IN), (0, 12, IN), (0, 13, OUT), (0, 14, IN)]) == [
        ("geofence_enter", 2, 0, "yard", 12)]  # at the fix that confirmed it
    assert run(tr, [(0, 15, OUT), (0, 16, OUT), (0, 17, OUT)]) == [
        ("geofence_exit", 2, 0, "yard", 17)]


def test_min_seconds():
    tr = FenceTracker(fences(YARD), min_seconds=120)
    assert run(tr, [(0, 0, IN), (0, 1, IN), (0, 1.5, OUT), (0, 2, IN), (0, 3, IN), (0, 4, IN)]) == [
        ("geofence_enter", 5, 0, "yard", 4)]


def test_min_metres_band():
    tr = FenceTracker(fences(YARD), min_metres=50)
    near_in = (0.01 - 20 / 111_320, 0.005)  # 20 m inside the east edge
    near_out = (0.01 + 20 / 111_320, 0.005)  # 20 m outside
    far_out = (0.01 + 80 / 111_320, 0.005)
    assert run(tr, [(0, 0, near_in), (0, 1, near_out), (0, 2, near_in)]) == []
    assert run(tr, [(0, 3, IN)]) == [("geofence_enter", 0, 0, "yard", 3)]
    assert run(tr, [(0, 4, near_out), (0, 5, near_in), (0, 6, near_out)]) == []
    assert run(tr, [(0, 7, far_out)]) == [("geofence_exit", 0, 0, "yard", 7)]


def test_bad_hysteresis_arguments():
    with pytest.raises(ValueError):
        FenceTracker(fences(YARD), min_fixes=0)
    with pytest.raises(ValueError):
        FenceTracker(fences(YARD), min_metres=-1)


# --- fence reloads --------------------------------------------------------------------------

def test_replace_fences_carries_state_for_unchanged_fences():
    tr = FenceTracker(fences(YARD, DOCK))
    run(tr, [(0, 0, BOTH), (1, 0, IN)])
    moved_dock = square("dock", 0.006, 0.006, 0.02, 0.02, kind="customer")
    gate = square("gate", 0.0, 0.0, 0.003, 0.003)
    yard_1min = square("yard", 0.0, 0.0, 0.01, 0.01, name="Yard", dwell_max_min=1)
    tr.replace_fences(fences(gate, yard_1min, moved_dock))
    assert tr.inside(0) == ["yard"] and tr.inside(1) == ["yard"]
    # yard carried over (no new enter) with its new 1-minute dwell; dock changed shape, so
    # device 0 enters it afresh; gate is new
    assert run(tr, [(0, 2, BOTH), (1, 2, IN)]) == [
        ("dwell_exceeded", 0, 0, "yard", 1), ("dwell_exceeded", 0, 1, "yard", 1),
        ("geofence_enter", 0, 0, "dock", 2), ("geofence_enter", 1, 1, "gate", 2)]
    tr.replace_fences(fences(DOCK))  # yard removed: dropped silently, no exit
    assert run(tr, [(0, 3, OUT), (1, 3, OUT)]) == []
    assert tr.inside(0) == [] and tr.inside(1) == []
