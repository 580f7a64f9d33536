"""Simulator basics: determinism, contract validity of every event, encoding, world/fences."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainsight.sim import PROFILES, load_scenario, parse_duration, parse_time, simulate
from chainsight.sim.encode import Dec, Int, Iso, LineEncoder, Lit, ZInt, iso_strings
from chainsight.sim.generate import rng_for
from chainsight.sim.world import build_world

ROOT = Path(__file__).resolve().parents[1]
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
STEPS = {"received", "put_away", "picked", "packed", "loaded", "unloaded", "delivered"}
STATUSES = {"created", "allocated", "shipped", "in_transit", "delivered", "cancelled"}
MODES = {"road", "rail", "sea", "air"}


@pytest.fixture(scope="module")
def lines(sim):
    return b"".join(sim.iter_byte_blocks(4096))


# --- a small contract checker ----------------------------------------------------------------
def _num(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _time_ok(v, iso_only=False):
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return not iso_only
    if not isinstance(v, str):
        return False
    try:
        return datetime.fromisoformat(v).tzinfo is not None
    except ValueError:
        return False


def contract_errors(e: dict) -> list[str]:
    """Violations of the input-event contract (v1) by one event."""
    err = []
    t = e.get("type")
    if t not in ("gps", "sensor", "scan", "order"):
        return [f"bad type {t!r}"]
    if not _time_ok(e.get("ts")):
        err.append("ts")
    if "event_id" in e and not isinstance(e["event_id"], str):
        err.append("event_id")
    if len(orjson.dumps(e)) > 64 * 1024:
        err.append("payload > 64 KiB")
    if t == "gps":
        if not isinstance(e.get("device_id"), str):
            err.append("device_id")
        if not (_num(e.get("lat")) and -90 <= e["lat"] <= 90):
            err.append("lat")
        if not (_num(e.get("lon")) and -180 <= e["lon"] <= 180):
            err.append("lon")
        if "speed_kmh" in e and not (_num(e["speed_kmh"]) and 0 <= e["speed_kmh"] < 200):
            err.append("speed_kmh")
        if "heading_deg" in e and not (_num(e["heading_deg"]) and 0 <= e["heading_deg"] < 360):
            err.append("heading_deg")
        if "accuracy_m" in e and not (_num(e["accuracy_m"]) and e["accuracy_m"] > 0):
            err.append("accuracy_m")
    elif t == "sensor":
        if not isinstance(e.get("device_id"), str):
            err.append("device_id")
        if "temp_c" not in e and "humidity_pct" not in e:
            err.append("no reading")
        if "temp_c" in e and not (_num(e["temp_c"]) and -60 < e["temp_c"] < 80):
            err.append("temp_c")
        if "humidity_pct" in e and not (_num(e["humidity_pct"]) and 0 <= e["humidity_pct"] <= 100):
            err.append("humidity_pct")
        if "door_open" in e and not isinstance(e["door_open"], bool):
            err.append("door_open")
        if "battery_pct" in e and not (_num(e["battery_pct"]) and 0 <= e["battery_pct"] <= 100):
            err.append("battery_pct")
    elif t == "scan":
        for k in ("shipment_id", "site_id"):
            if not isinstance(e.get(k), str):
                err.append(k)
        if e.get("step") not in STEPS:
            err.append("step")
        if "lat" in e and not (_num(e["lat"]) and -90 <= e["lat"] <= 90):
            err.append("lat")
        if "lon" in e and not (_num(e["lon"]) and -180 <= e["lon"] <= 180):
            err.append("lon")
    else:
        for k in ("order_id", "shipment_id"):
            if not isinstance(e.get(k), str):
                err.append(k)
        if e.get("status") not in STATUSES:
            err.append("status")
        if "product_profile" in e and e["product_profile"] not in PROFILES:
            err.append("product_profile")
        if "promised_by" in e and not _time_ok(e["promised_by"]):
            err.append("promised_by")
        for k in ("origin", "destination"):
            if k in e and not (isinstance(e[k], dict) and _num(e[k].get("lat"))
                               and _num(e[k].get("lon"))):
                err.append(k)
        if "weight_kg" in e and not (_num(e["weight_kg"]) and e["weight_kg"] > 0):
            err.append("weight_kg")
        if "mode" in e and e["mode"] not in MODES:
            err.append("mode")
        if "lot" in e:
            lot = e["lot"]
            if not (isinstance(lot, dict) and isinstance(lot.get("lot_id"), str)
                    and all({"kind", "issuer", "id"} <= set(c) for c in lot["certificates"])):
                err.append("lot")
        if "device_ids" in e and not all(isinstance(d, str) for d in e["device_ids"]):
            err.append("device_ids")
    return err


# --- tests -------------------------------------------------------------------------------------
def test_every_event_satisfies_the_contract(events):
    bad = [(e, errs) for e in events if (errs := contract_errors(e))]
    assert not bad, bad[:3]
    assert {e["type"] for e in events} == {"gps", "sensor", "scan", "order"}
    assert all(ISO_MS.match(e["ts"]) for e in events)


def test_same_seed_same_bytes_other_seed_differs(lines, sim):
    again = simulate("smoke")
    assert b"".join(again.iter_byte_blocks(999)) == lines
    assert orjson.dumps(again.ground_truth()) == orjson.dumps(sim.ground_truth())
    assert again.fences() == sim.fences()
    other = simulate("smoke", seed=4)
    assert b"".join(other.iter_byte_blocks()) != lines


def test_lines_equal_dicts_byte_for_byte(lines, events, sim):
    split = lines.split(b"\n")[:-1]
    assert len(split) == len(events) == len(sim)
    for line, ev in zip(split, events, strict=True):
        assert orjson.dumps(ev) == line
    assert list(sim.iter_lines())[:50] == [x.decode() for x in split[:50]]
    batches = list(sim.iter_batches(777))
    assert [e for b in batches for e in b] == events


def test_event_ids_unique_except_duplicates(events, sim):
    ids: dict[str, int] = {}
    for e in events:
        ids[e["event_id"]] = ids.get(e["event_id"], 0) + 1
    dup_ids = {f["event_id"] for f in sim.ground_truth()["faults"] if f["type"] == "duplicate"}
    assert {k for k, v in ids.items() if v > 1} == dup_ids
    assert all(ids[k] == 2 for k in dup_ids)


def test_counts_match_stream(events, sim):
    c = sim.counts()
    for t in ("gps", "sensor", "scan", "order"):
        n = sum(1 for e in events if e["type"] == t)
        dups = sum(1 for f in sim.ground_truth()["faults"]
                   if f["type"] == "duplicate" and f["event_type"] == t)
        assert n == c[t] + dups
    assert c["lines"] == len(events)


def test_ms_timestamps_option():
    s = simulate("smoke", shipments=15, ts_format="ms")
    evs = list(s)
    assert all(isinstance(e["ts"], int) and not isinstance(e["ts"], bool) for e in evs)
    assert all(isinstance(e["promised_by"], int) for e in evs if e["type"] == "order")
    raw = b"".join(s.iter_byte_blocks()).split(b"\n")[:-1]
    assert [json.loads(x) for x in raw] == evs
    start = load_scenario("smoke").start_ms
    assert min(e["ts"] for e in evs if e["type"] == "order") >= start


def test_arrival_order_is_roughly_event_time(sim, events):
    arr = sim.arrival_ms()
    assert np.all(np.diff(arr) >= 0)
    truth = sim.ground_truth()
    skewed = {f["device_id"] for f in truth["faults"] if f["type"] == "clock_skew"}
    offline = {f["device_id"] for f in truth["faults"] if f["type"] == "offline_buffer"}
    dups = {f["event_id"] for f in truth["faults"] if f["type"] == "duplicate"}
    ts = np.array([_ms(e["ts"]) for e in events])
    normal = np.array([e.get("device_id") not in skewed | offline and e["event_id"] not in dups
                       for e in events])
    lag = arr[normal] - ts[normal]
    assert lag.min() >= 0 and lag.max() < 3000  # network latency only


def test_order_lifecycle_and_device_links(events):
    orders: dict[str, list[dict]] = {}
    seen = set()
    for e in events:
        if e["type"] == "order" and e["event_id"] not in seen:  # skip duplicate sends
            seen.add(e["event_id"])
            orders.setdefault(e["shipment_id"], []).append(e)
    first_seen: dict[str, int] = {}
    for i, e in enumerate(events):
        if e["type"] in ("gps", "sensor"):
            first_seen.setdefault(e["shipment_id"], i)
    for sid, evs in orders.items():
        statuses = [e["status"] for e in sorted(evs, key=lambda e: e["ts"])]
        full = ["created", "allocated", "shipped", "in_transit", "delivered"]
        assert statuses in (full[: len(statuses)], ["created", "allocated", "cancelled"])
        assert all(e["mode"] == "road" and e["product_profile"] in PROFILES for e in evs)
        assert evs[0]["device_ids"] == [f"TRK-{sid[4:]}", f"RFR-{sid[4:]}"]
        if sid in first_seen:  # the order (with its device links) arrives before devices report
            assert events.index(evs[0]) < first_seen[sid]


def test_world_and_fences(sim):
    fc = sim.fences()
    assert fc["type"] == "FeatureCollection"
    ids = [f["properties"]["fence_id"] for f in fc["features"]]
    assert len(ids) == len(set(ids))
    kinds = {f["properties"]["kind"] for f in fc["features"]}
    assert kinds == {"hub", "customer", "cold_store", "corridor"}
    for f in fc["features"]:
        p, g = f["properties"], f["geometry"]
        if p["kind"] == "corridor":
            assert g["type"] == "LineString" and p["width_m"] > 0 and len(g["coordinates"]) > 5
            lon, lat = np.array(g["coordinates"]).T
            # road-like: the polyline is longer than the straight line between its ends
            seg = np.hypot(np.diff(lon) * np.cos(np.radians(lat[0])), np.diff(lat)).sum()
            direct = np.hypot((lon[-1] - lon[0]) * np.cos(np.radians(lat[0])), lat[-1] - lat[0])
            assert seg > direct * 1.01
        else:
            assert g["type"] == "Point" and p["radius_m"] > 0
            lon, lat = g["coordinates"]
            assert 49.5 < lat < 53.5 and 2.5 < lon < 8.5  # NL / BE / western DE
        if p["kind"] == "hub":
            assert p["dwell_max_min"] > 0
    corridors = {i for i in ids if i.startswith("COR-")}
    assert {t["corridor_fence_id"] for t in sim.ground_truth()["trips"]} <= corridors


def test_example_fences_file_matches_default_world():
    data = json.loads((ROOT / "chainsight" / "defaults" / "fences.example.geojson").read_text())
    default = load_scenario("default")
    world = build_world(default, rng_for(default.seed, 1))
    assert data == json.loads(json.dumps(world.fences()))


def test_scenarios_and_overrides():
    demo = load_scenario("demo")
    assert 100 <= demo.shipments <= 1000 and demo.silence_count == 1 and demo.excursion_count >= 3
    d = load_scenario("default", shipments=5, duration="30m")
    assert d.shipments == 5 and d.duration_ms == 30 * 60_000
    demo = ROOT / "chainsight" / "defaults" / "scenarios" / "demo.json"
    assert load_scenario(demo).name == "demo"
    with pytest.raises(ValueError, match="unknown scenario field"):
        load_scenario("default", nonsense=1)
    with pytest.raises(ValueError):
        load_scenario("default", excursion_factor=(1.2, 2.0))
    with pytest.raises(FileNotFoundError):
        load_scenario("no-such-scenario")
    assert parse_duration("1h30m") == 5400 and parse_duration("90s") == 90
    assert parse_duration("45") == 45 and parse_duration(12) == 12
    with pytest.raises(ValueError):
        parse_duration("1 fortnight")


def test_demo_scenario_has_its_faults():
    truth = simulate("demo").ground_truth()
    inj = truth["injected_faults"]
    assert inj["excursion"] >= 3 and inj["short_excursion"] >= 2
    assert inj["sensor_silence"] == 1
    assert truth["seed"] == 42 and truth["scenario"]["name"] == "demo"


# --- encoder -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-179_999_999, 179_999_999), st.integers(0, 99_999),
                          st.integers(-10**11, 10**13), st.integers(-99_999, 99_999)),
                min_size=1, max_size=40))
def test_encoder_roundtrip(rows):
    a, b, ms, c = (np.array(x, dtype=np.int64) for x in zip(*rows, strict=True))
    enc = LineEncoder([Lit(b'{"a":'), Dec("a", 3, 6), Lit(b',"id":"X-'), ZInt("b", 6),
                       Lit(b'","t":"'), Iso("ms"), Lit(b'","u":'), Int("ms2", 15),
                       Lit(b',"c":'), Dec("c", 3, 2), Lit(b',"id2":"X-'), ZInt("b", 6),
                       Lit(b'"}')])
    ms2 = np.abs(ms)
    out = enc.encode({"a": a, "b": b, "ms": ms, "ms2": ms2, "c": c}, a.size)
    got = [json.loads(x) for x in out.split(b"\n")[:-1]]
    assert len(got) == a.size
    for g, ai, bi, mi, m2, ci in zip(got, a, b, ms, ms2, c, strict=True):
        assert g["a"] == ai / 1e6 and g["c"] == ci / 100
        assert g["id"] == g["id2"] == f"X-{bi:06d}"
        assert parse_time(g["t"]) == mi and g["t"].endswith("Z") and g["u"] == m2


def test_iso_strings_match_python():
    ms = np.array([0, -1, 951_782_400_000, 4_102_444_799_999, 1_795_000_000_123])
    assert [parse_time(t) for t in iso_strings(ms)] == ms.tolist()
    assert iso_strings(ms)[2] == "2000-02-29T00:00:00.000Z"  # the simulator always writes ms
    assert iso_strings(ms)[0] == "1970-01-01T00:00:00.000Z"


def _ms(v):
    return parse_time(v)


def test_profiles_beyond_the_builtins_get_readings_inside_their_limits():
    """Any profile of config/profiles.json can be in profile_mix: its reefers hold a set point
    inside its temperature range and, when it has one, inside its humidity range."""
    mix = {"pharma_2_8_gdp": 1.0, "fresh_produce": 1.0, "frozen_gdp": 1.0}
    sim = simulate("smoke", shipments=40, duration="90m", destination_mix={"customer": 1.0},
                   excursion_count=0, short_excursion_count=0, profile_mix=mix)
    events = list(sim)
    profile = {e["shipment_id"]: e["product_profile"] for e in events if e["type"] == "order"}
    assert set(profile.values()) == set(mix)
    readings = [(PROFILES[profile[e["shipment_id"]]], e) for e in events if e["type"] == "sensor"]
    assert {p.name for p, _ in readings} == set(mix)
    for p, e in readings:
        assert p.min_c < e["temp_c"] < p.max_c, e
        if p.humidity_min is not None:
            assert p.humidity_min < e["humidity_pct"] < p.humidity_max, e
    produce = [e["temp_c"] for p, e in readings if p.name == "fresh_produce"]
    assert 1.0 < np.median(produce) < 3.0  # about the middle of 0..4 °C


def test_a_profile_no_file_defines_is_refused():
    with pytest.raises(ValueError, match="unknown product profile 'pharma_9_9' in profile_mix"):
        load_scenario("smoke", profile_mix={"pharma_9_9": 1.0})
