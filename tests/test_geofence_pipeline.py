"""Geofence rules inside the engine: enter/exit per contract, dwell, route deviation."""

import subprocess
import sys
from dataclasses import replace

import orjson
from helpers import at, fix, line, order

from chainsight.config import load_settings
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet

# A hub circle at (52.0, 4.0) and a corridor running east from it along lat 52.0.
FENCES = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"fence_id": "HUB", "kind": "hub", "radius_m": 500,
                                       "dwell_max_min": 10},
     "geometry": {"type": "Point", "coordinates": [4.0, 52.0]}},
    {"type": "Feature", "properties": {"fence_id": "ROUTE", "kind": "corridor", "width_m": 400},
     "geometry": {"type": "LineString", "coordinates": [[4.0, 52.0], [4.5, 52.0]]}},
]}
DEG_PER_KM_LAT = 1 / 111.2


def run(lines):
    engine = Engine(fences=FenceSet.from_geojson(FENCES))
    alerts = engine.process(lines).alerts + engine.flush().alerts
    return alerts


def events(alerts, *kinds):
    """(kind, state, fence, at) of the transitions of `kinds`, escalations left out."""
    return [(a["kind"], a["state"], a.get("fence_id"), a["at"]) for a in alerts
            if a["kind"] in kinds and a["details"].get("transition") != "escalated"]


def test_first_fix_inside_is_an_enter_and_leaving_is_an_exit():
    lines = [order(corridor_id="ROUTE"), fix(0, 52.0, 4.0), fix(1, 52.0, 4.003),
             fix(2, 52.0, 4.05), fix(3, 52.0, 4.1)]
    got = events(run(lines), "geofence_enter", "geofence_exit")
    assert got == [("geofence_enter", "open", "HUB", at(0)),
                   ("geofence_enter", "open", "ROUTE", at(0)),
                   ("geofence_exit", "open", "HUB", at(2))]


def test_a_device_never_inside_gets_no_exit():
    assert events(run([fix(i, 53.0, 5.0) for i in range(5)]), "geofence_exit") == []


def test_dwell_fires_on_stream_time_once_per_visit_and_resolves_on_exit():
    parked = [fix(i, 52.0, 4.0) for i in range(3)]  # then G1 goes quiet inside the hub
    others = [fix(3 + i, 53.0, 5.0, device="G2") for i in range(20)]
    leave = [fix(25, 52.0, 4.2)]
    got = events(run(parked + others + leave), "dwell_exceeded")
    assert got == [("dwell_exceeded", "open", "HUB", at(10)),
                   ("dwell_exceeded", "resolved", "HUB", at(25))]


def test_route_deviation_needs_distance_and_fixes_and_resolves_on_return():
    off = 52.0 + 2 * DEG_PER_KM_LAT  # 2 km north of the corridor
    inside = [fix(i, 52.0, 4.1 + 0.01 * i) for i in range(4)]
    away = [fix(4 + i, off, 4.14 + 0.01 * i) for i in range(4)]
    back = [fix(8 + i, 52.0, 4.18 + 0.01 * i) for i in range(4)]
    got = events(run([order(corridor_id="ROUTE")] + inside + away + back), "route_deviation")
    assert got == [("route_deviation", "open", "ROUTE", at(6)),
                   ("route_deviation", "resolved", "ROUTE", at(10))]


def test_jitter_at_the_corridor_edge_or_before_departure_is_no_deviation():
    edge = 52.0 + 0.21 * DEG_PER_KM_LAT  # 10 m outside the 200 m half-width
    jitter = [fix(i, edge if i % 2 else 52.0, 4.1) for i in range(10)]
    assert events(run([order(corridor_id="ROUTE")] + jitter), "route_deviation") == []
    away = [fix(i, 53.0, 4.1) for i in range(1, 6)]
    waiting = [order(status="allocated", corridor_id="ROUTE"), fix(0, 52.0, 4.1)] + away
    assert events(run(waiting), "route_deviation") == []


def test_replay_rejects_an_invalid_fence_naming_it(tmp_path):
    bad = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"fence_id": "bowtie"},
         "geometry": {"type": "Polygon",
                      "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}]}
    (tmp_path / "fences.geojson").write_bytes(orjson.dumps(bad))
    (tmp_path / "events.jsonl").write_bytes(line(type="gps", device_id="G", ts=at(0), lat=0,
                                                 lon=0) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "chainsight.cli", "replay",
                           str(tmp_path / "events.jsonl"), "--fences",
                           str(tmp_path / "fences.geojson")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "bowtie" in proc.stderr


def test_gps_quality_filters_drop_and_count_impossible_fixes():
    engine = Engine(fences=FenceSet.from_geojson(FENCES))
    jump = [fix(0, 52.0, 4.0), fix(1, 52.0, 4.003), fix(2, 10.0, 4.003), fix(3, 52.0, 4.006),
            fix(4, 0.0, 0.0)]
    alerts = engine.process(jump).alerts + engine.flush().alerts
    metrics = engine.metrics()
    assert metrics["gps_dropped.speed"] == 1 and metrics["gps_dropped.zero"] == 1
    assert events(alerts, "geofence_exit") == []  # the outliers never left the hub


def relinked_run(odd_shipment):
    """Device G1 on S1 crosses the hub every 20 s; its third fix carries `odd_shipment`, and
    an S1 order arrives in the same batch. Settings: every GPS filter but zero is off."""
    settings = replace(load_settings(), gps_max_speed_kmh=None, gps_min_interval_s=None)
    engine = Engine(settings, fences=FenceSet.from_geojson(FENCES))
    out_, in_ = 52.006, 52.0  # 667 m north of the hub centre, and the centre
    lats = [out_, in_, in_, out_, in_, out_]
    lines = [order(minutes=0.1, devices=())] + [
        fix(i / 3, lat, 4.0, shipment_id=odd_shipment if i == 2 else "S1")
        for i, lat in enumerate(lats)]
    alerts = engine.process(lines).alerts + engine.flush().alerts
    got = [(a["kind"], a["fence_id"], a["at"], a["shipment_id"]) for a in alerts
           if a["kind"] in ("geofence_enter", "geofence_exit") and a["fence_id"] == "HUB"]
    return got, {name: n for name, n in engine.metrics().items()
                 if name.startswith("gps_dropped.")}


def test_a_fix_linked_to_another_shipment_is_not_dropped_by_a_filter_that_is_off():
    same, dropped = relinked_run("S1")
    assert [(k, t) for k, _, t, _ in same] == [
        ("geofence_enter", at(1 / 3)), ("geofence_exit", at(1)),
        ("geofence_enter", at(4 / 3)), ("geofence_exit", at(5 / 3))]
    assert sum(dropped.values()) == 0
    assert sum(relinked_run("S2")[1].values()) == 0


def test_a_fix_linked_to_another_shipment_leaves_the_device_transitions_alone():
    same, _ = relinked_run("S1")
    relinked, _ = relinked_run("S2")
    assert [(k, f, t) for k, f, t, _ in relinked] == [(k, f, t) for k, f, t, _ in same]
