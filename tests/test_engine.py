"""The processing core: excursion and silence rules at their edges, duplicates and lateness."""

import random
from itertools import zip_longest

import numpy as np
from helpers import at, fix, line, ms, order, reading, series
from hypothesis import given, settings
from hypothesis import strategies as st

from chainsight.engine.core import Engine
from chainsight.engine.pipeline import business_phases
from chainsight.geofence import FenceSet


def run(lines, engine=None):
    engine = engine or Engine()
    out = engine.process(lines)
    alerts = out.alerts + engine.flush().alerts
    return alerts, engine


def kinds(alerts, kind="temperature_excursion"):
    """Open/resolve transitions of the contract's rules: the continuous excursion, silence.
    Escalations and the other cold-chain rules are tested in test_alerts*.py."""
    return [(a["state"], a["at"]) for a in alerts if a["kind"] == kind
            and a["details"].get("rule") in (None, "continuous")
            and a["details"]["transition"] in ("opened", "resolved")]


def test_excursion_one_reading_short_of_the_rule_opens_nothing():
    # pharma_2_8: 15 minutes. Readings 1 min apart, outside from minute 1 to 15 (14 min).
    alerts, _ = run([order()] + series([5] + [9] * 15 + [5] * 3))
    assert kinds(alerts) == []


def test_excursion_exactly_at_the_rule_opens_at_that_reading_and_resolves_when_back():
    alerts, engine = run([order()] + series([5] + [9] * 16 + [5] * 3))
    assert kinds(alerts) == [("open", at(16)), ("resolved", at(17))]
    opened = alerts[0]
    assert opened["shipment_id"] == "S1" and opened["device_id"] == "T1"
    assert opened["details"]["started_at"] == at(1)
    assert opened["details"]["max_c"] == 9 and opened["details"]["limit_c"] == 8
    assert opened["details"]["duration_min"] == 15
    assert alerts[1]["alert_id"] == opened["alert_id"]
    assert engine.snapshot()["shipments"]["S1"]["open_alerts"] == []


def test_a_long_excursion_opens_once_and_stays_open():
    alerts, engine = run([order()] + series([5] + [-1.5 + 0.01 * i for i in range(120)]))
    assert kinds(alerts) == [("open", at(16))]
    assert alerts[0]["details"]["min_c"] == -1.5 and alerts[0]["details"]["limit_c"] == 2
    assert alerts[0]["alert_id"] in engine.snapshot()["shipments"]["S1"]["open_alerts"]


def test_readings_at_the_limits_are_inside_the_range():
    alerts, _ = run([order()] + series([2, 8] * 30))
    assert kinds(alerts) == []


def test_alert_ids_are_deterministic_and_distinct_per_alert():
    # inside for longer than the quiet period in between: two alerts (a quicker return
    # continues the first alert, see test_alerts_lifecycle.py)
    lines = [order()] + series([5] + [9] * 20 + [5] * 12 + [9] * 20 + [5])
    first, _ = run(lines)
    again, _ = run(lines)
    assert [a["alert_id"] for a in first] == [a["alert_id"] for a in again]
    opens = [a["alert_id"] for a in first if a["details"]["transition"] == "opened"]
    assert len(opens) == 2 and len(set(opens)) == 2


def test_duplicates_change_nothing_and_are_counted():
    lines = [order()] + series([5] + [9] * 16 + [5])
    with_ids = [line(type="sensor", device_id="T1", ts=at(i), temp_c=9, event_id=f"e{i}")
                for i in range(1, 17)]
    dup_alerts, engine = run(lines + lines[5:9] + [reading(3, 5.0)] + with_ids + with_ids[:3])
    # reading(3, 5.0) repeats (sensor, T1, minute 3) without an event_id: a duplicate too
    assert kinds(dup_alerts) == kinds(run(lines)[0])
    counters = engine.snapshot()["counters"]
    assert counters["duplicates"] == 4 + 1 + 3


def test_out_of_order_within_lateness_gives_the_in_order_alerts():
    lines = [order()] + series([5] * 5 + [9] * 40 + [5] * 5 + [11] * 10 + [5] * 30)
    expected, _ = run(lines)
    rng = random.Random(7)
    shuffled = lines[:1] + sorted(lines[1:], key=lambda raw: lines.index(raw) + rng.uniform(0, 4))
    assert shuffled != lines
    got, engine = run(shuffled)
    assert got == expected
    assert engine.snapshot()["counters"]["late_dropped"] == 0


def test_events_later_than_the_bound_are_counted_and_do_not_reopen_windows():
    lines = [order()] + series([5] * 30)
    late = [reading(3.5 + i, 9) for i in range(20)]  # an excursion, but over 5 minutes late
    alerts, engine = run(lines + late)
    assert kinds(alerts) == []
    assert engine.snapshot()["counters"]["late_dropped"] == 20


def test_profile_from_the_order_and_other_profiles():
    lines = [order(profile="frozen")] + series([-20] * 3 + [-12] * 16 + [-20])
    assert kinds(run(lines)[0]) == [("open", at(18)), ("resolved", at(19))]
    chilled = [order(profile="chilled_food")] + series([3] + [6] * 25 + [3])
    assert kinds(run(chilled)[0]) == []  # 30 minutes for chilled food


def test_sensor_silent_fires_on_stream_time_not_on_the_silent_device():
    # two GPS units carry stream time on (the newest time at least two devices reached)
    lines = [order()] + series([5] * 10) + [fix(10 + i, device=d) for i in range(30)
                                             for d in ("G1", "G2")]
    alerts, _ = run(lines)
    silent = [a for a in alerts if a["kind"] == "sensor_silent"]
    assert kinds(silent, "sensor_silent") == [("open", at(19))]
    assert silent[0]["device_id"] == "T1"


def test_sensor_silent_resolves_when_the_sensor_reports_again():
    lines = [order()] + series([5] * 10) + [fix(10 + i) for i in range(30)] + series(
        [5] * 5, start=40)
    silent = kinds(run(lines)[0], "sensor_silent")
    assert silent == [("open", at(19)), ("resolved", at(40))]


def test_no_silence_alert_below_the_limit_or_when_not_in_transit():
    assert kinds(run([order()] + series([5] * 10) + [fix(19)])[0], "sensor_silent") == []
    delivered = [order()] + series([5] * 10) + [order(minutes=9.5, status="delivered")]
    assert kinds(run(delivered + [fix(10 + i) for i in range(30)])[0], "sensor_silent") == []


def test_state_snapshot_has_the_contract_fields():
    lines = [order()] + series([4.5, 5.5]) + [fix(1, 51.5, 5.25)]
    _, engine = run(lines + [b"garbage"])
    state = engine.snapshot()
    s1 = state["shipments"]["S1"]
    assert s1 == {"status": "in_transit", "last_position": {"lat": 51.5, "lon": 5.25,
                                                             "ts": at(1)},
                  "last_temp_c": 5.5, "profile": "pharma_2_8", "open_alerts": [], "eta": None,
                  "mkt_c": 4.5}  # extra key: Mean Kinetic Temperature so far
    assert state["counters"] == {"events": 4, "rejected": 1, "duplicates": 0, "late_dropped": 0}


def test_results_do_not_depend_on_batch_boundaries():
    one = series([5] + [9] * 20 + [5] * 12)
    two = series([5] * 10 + [1] * 20, device="T2")
    mixed = [r for pair in zip_longest(one, two) for r in pair if r is not None]
    lines = [order(), order("S2", devices=("T2",))] + mixed
    whole, _ = run(lines)
    assert {(a["shipment_id"], a["state"]) for a in whole} == {
        ("S1", "open"), ("S1", "resolved"), ("S2", "open")}
    engine = Engine()
    pieces = []
    for i in range(0, len(lines), 7):
        pieces += engine.process(lines[i:i + 7]).alerts
    pieces += engine.flush().alerts
    assert sorted(map(str, pieces)) == sorted(map(str, whole))


@given(st.lists(st.tuples(st.booleans(), st.integers(-1, 3), st.integers(0, 3)), max_size=60))
@settings(max_examples=300, deadline=None)
def test_business_phases_keep_every_order_that_matters(rows):
    """Business rows run after their shipment's earlier rows and before its later ones; a
    device's rows stay in time order; unlinked device rows wait for every business row."""
    business = np.array([b and s >= 0 for b, s, _ in rows], dtype=bool)
    shipment = np.array([s for _, s, _ in rows], dtype=np.int32)
    device = np.array([-1 if b else d for b, d in zip(business, (d for *_, d in rows),
                                                      strict=True)], dtype=np.int32)
    phase = business_phases(business, shipment, device).tolist()
    # the engine runs device rows of phase k, then business rows of phase k + 1
    rank = [2 * p - 1 if b else 2 * p for p, b in zip(phase, business.tolist(), strict=True)]
    for j in range(len(rows)):
        for i in range(j):
            same_shipment = shipment[i] == shipment[j] >= 0
            if (business[i] or business[j]) and same_shipment:
                assert rank[i] < rank[j] or (business[i] and business[j] and rank[i] == rank[j])
            if not business[i] and not business[j] and device[i] == device[j]:
                assert rank[i] <= rank[j]
            if business[i] and not business[j] and shipment[j] < 0:
                assert rank[i] < rank[j]


def test_one_device_with_a_wrong_clock_raises_nothing_for_anyone_else():
    """A valid reading stamped 20 hours ahead must not move the stream's time: no
    sensor_silent or dwell_exceeded for the rest of the fleet at the end of the stream."""
    hub = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"fence_id": "HUB", "kind": "hub", "dwell_max_min": 60},
        "geometry": {"type": "Point", "coordinates": [4.0, 52.0]}}]}
    hub["features"][0]["properties"]["radius_m"] = 5000
    fleet = [order(f"S{i}", devices=(f"T{i}", f"G{i}")) for i in range(1, 5)]
    fleet += [r for m in range(30) for i in range(1, 5) for r in (
        reading(m, 5.0, device=f"T{i}"), fix(m + 0.5, device=f"G{i}"))]
    wrong = reading(20 * 60, 5.0, device="T4")  # a valid reading, 20 hours ahead

    def alerts(lines):
        engine = Engine(fences=FenceSet.from_geojson(hub))
        out = [engine.process(lines, now=ms(30)), engine.flush()]
        return [(a["kind"], a["shipment_id"], a["state"], a["at"]) for o in out for a in o.alerts]

    normal, skewed = alerts(fleet), alerts(fleet[:40] + [wrong] + fleet[40:])
    others = [a for a in skewed if a[1] != "S4"]
    assert others == [a for a in normal if a[1] != "S4"]
    assert not any(kind in ("sensor_silent", "dwell_exceeded") for kind, *_ in others)
    assert any(kind == "geofence_enter" for kind, *_ in others)  # the fleet is in the hub


def test_live_state_shows_every_event_at_once_and_the_newest_wins():
    """State is immediate whatever the lateness: each reading and fix shows at once, an
    out-of-order (older) one never overwrites a newer value; STATE.json stays settled."""
    engine = Engine()
    engine.process([order()], now=ms(-60))
    for m in range(8):
        engine.process([reading(m, 3.0 + m), fix(m + 0.5, lon=4.0 + m / 100)], now=ms(m))
        view = engine.shipments(["S1"])["S1"]
        assert view["last_temp_c"] == 3.0 + m and view["status"] == "in_transit"
        assert view["last_position"] == {"lat": 52.0, "lon": 4.0 + m / 100, "ts": at(m + 0.5)}
    engine.process([reading(2.5, 20.0), fix(3, lon=9.0)], now=ms(8))  # late, within lateness
    view = engine.shipments(["S1"])["S1"]
    assert view["last_temp_c"] == 10.0 and view["last_position"]["lon"] == 4.07
    assert engine.snapshot()["shipments"]["S1"]["last_temp_c"] == 4.0  # settled: 5 min behind
    engine.process([line(type="scan", shipment_id="S1", ts=at(9), site_id="W", step="delivered")],
                   now=ms(9))
    assert engine.shipments(["S1"])["S1"]["status"] == "delivered"
    assert engine.snapshot()["shipments"]["S1"]["status"] == "in_transit"


def test_the_end_of_a_recording_stops_its_time_until_events_arrive():
    engine = Engine(live=True)
    fleet = [order()] + series([5] * 10) + [fix(m, device=d) for m in range(10)
                                            for d in ("G1", "G2")]
    engine.process(fleet, now=ms(9))
    engine.flush()
    assert engine.ended and engine.advance(ms(9 + 60)).alerts == []  # an hour idle: nothing
    engine.process([fix(10, device="G1"), fix(10, device="G2")], now=ms(10))
    assert not engine.ended
    silent = [a for a in engine.advance(ms(10 + 20)).alerts if a["kind"] == "sensor_silent"]
    assert [(a["state"], a["at"]) for a in silent] == [("open", at(19))]
