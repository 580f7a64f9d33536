"""Cold-chain rules at their edges: cumulative budget, MKT, humidity, door, suggested action."""

import math
import random
from functools import partial

import pytest
from helpers import at, fix, line, ms, reading, series
from helpers import order as contract_order

from chainsight.config import Profile, load_profiles
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet

# The contract's built-ins carry only the continuous rule; the GDP variant has every option.
order = partial(contract_order, profile="pharma_2_8_gdp")
H_OVER_R = 83144 / 8.314462618  # ΔH/R of the rule, in kelvin


def engine(**profiles):
    extra = {name: Profile(name=name, **spec) for name, spec in profiles.items()}
    return Engine(profiles={**load_profiles(), **extra})


def run(lines, eng=None):
    eng = eng or Engine()
    alerts = eng.process(lines).alerts + eng.flush().alerts
    return alerts, eng


def of_rule(alerts, rule):
    """(state, at) of a rule's open/resolve transitions."""
    return [(a["state"], a["at"]) for a in alerts if a["details"].get("rule") == rule
            and a["details"]["transition"] in ("opened", "resolved")]


def humid(minutes, pct, device="T1"):
    return line(type="sensor", device_id=device, ts=at(minutes), humidity_pct=pct)


def door(minutes, is_open, temp=5.0, device="T1"):
    return reading(minutes, temp, device, door_open=is_open)


def scan(minutes, step, shipment="S1"):
    return line(type="scan", shipment_id=shipment, ts=at(minutes), site_id="X", step=step)


# --- cumulative budget (pharma_2_8: 60 minutes) ------------------------------------------------

def test_cumulative_exactly_the_budget_opens_nothing():
    alerts, _ = run([order()] + series([5] + [9] * 60 + [5] * 3))  # outside minute 1 to 61
    assert of_rule(alerts, "cumulative") == []


def test_cumulative_one_minute_over_the_budget_opens_at_that_reading():
    alerts, _ = run([order()] + series([5] + [9] * 62))
    assert of_rule(alerts, "cumulative") == [("open", at(62))]
    opened = next(a for a in alerts if a["details"].get("rule") == "cumulative")
    details = opened["details"]
    assert details["cumulative_min"] == 61 and details["budget_min"] == 60
    assert details["started_at"] == at(1) and details["max_c"] == 9
    assert details["limit_c"] == 8
    assert opened["kind"] == "temperature_excursion" and opened["state"] == "open"


def test_cumulative_adds_up_separate_runs_and_never_clears_by_itself():
    # three runs of 25 minutes, 5 minutes inside between them: 25 + 25 + 11 > 60 at minute 72
    alerts, engine_ = run([order()] + series([5] + ([9] * 25 + [5] * 5) * 3 + [5] * 30))
    assert of_rule(alerts, "cumulative") == [("open", at(72))]
    opened = [a for a in alerts if a["details"].get("rule") == "cumulative"][0]
    assert opened["alert_id"] in engine_.snapshot()["shipments"]["S1"]["open_alerts"]


def test_a_flapping_sensor_opens_one_cumulative_alert_and_no_continuous_one():
    # outside every other minute (each for one minute): never 15 minutes in a row, but 61
    # minutes in all at the reading of minute 121
    alerts, _ = run([order()] + series([9, 7] * 100))
    assert of_rule(alerts, "continuous") == []
    assert of_rule(alerts, "cumulative") == [("open", at(121))]


def test_cold_excursions_count_too():
    alerts, _ = run([order()] + series([5] + [1] * 62))
    details = next(a for a in alerts if a["details"].get("rule") == "cumulative")["details"]
    assert details["min_c"] == 1 and details["limit_c"] == 2


# --- Mean Kinetic Temperature ------------------------------------------------------------------

def test_mkt_matches_a_hand_computed_value():
    # 60 min at 5 °C then 60 min at 25 °C (each reading holds until the next):
    # exp(-ΔH/R / 278.15) = 2.43466e-16, exp(-ΔH/R / 298.15) = 2.71520e-15, mean 1.47933e-15,
    # -ln(mean) = 34.147186, 9999.9247 / 34.147186 = 292.848 K = 19.698 °C
    lines = [order()] + [reading(0, 5), reading(60, 25), reading(120, 5)]
    _, eng = run(lines)
    assert eng.snapshot()["shipments"]["S1"]["mkt_c"] == pytest.approx(19.698, abs=0.01)
    # time-weighted: 120 min at 5 °C, 60 min at 25 °C
    _, eng = run([order()] + [reading(0, 5), reading(120, 25), reading(180, 5)])
    expected = H_OVER_R / -math.log(
        (2 * math.exp(-H_OVER_R / 278.15) + math.exp(-H_OVER_R / 298.15)) / 3) - 273.15
    assert eng.snapshot()["shipments"]["S1"]["mkt_c"] == pytest.approx(expected, abs=0.01)
    assert expected == pytest.approx(16.925, abs=0.001)


def test_mkt_is_unknown_before_two_readings_and_a_constant_for_a_constant():
    _, eng = run([order(), reading(0, 4)])
    assert eng.snapshot()["shipments"]["S1"]["mkt_c"] is None
    _, eng = run([order()] + series([4] * 10))
    assert eng.snapshot()["shipments"]["S1"]["mkt_c"] == pytest.approx(4, abs=1e-9)


def test_mkt_is_incremental_across_batches():
    lines = [order()] + series([5 + (i % 7) for i in range(90)])
    _, whole = run(lines)
    eng = Engine()
    for i in range(0, len(lines), 4):
        eng.process(lines[i:i + 4])
    eng.flush()
    assert eng.snapshot()["shipments"]["S1"]["mkt_c"] == whole.snapshot()["shipments"]["S1"][
        "mkt_c"]


MKT_PROFILE = {"mkt": {"min_c": 2, "max_c": 8, "excursion_min": 10_000, "mkt_min_h": 1}}


def test_mkt_alerts_once_it_covers_the_profile_minimum_and_resolves_back_in_range():
    # 60 readings at 9 °C, then 5 °C. MKT = 9 °C covers 60 min at minute 60: opens. It is back at
    # 8 °C after x min at 5 °C, 60·(e9 − e8) = x·(e8 − e5) with eT = exp(−ΔH/R/(T + 273.15)):
    # x = 25.3, so the reading at minute 86 resolves it (85 is not enough).
    lines = [order(profile="mkt")] + series([9] * 60 + [5] * 40)
    alerts, _ = run(lines, engine(**MKT_PROFILE))
    assert of_rule(alerts, "mkt") == [("open", at(60)), ("resolved", at(86))]
    opened = next(a for a in alerts if a["details"].get("rule") == "mkt")
    assert opened["details"]["mkt_c"] == pytest.approx(9) and opened["details"]["limit_c"] == 8
    assert opened["details"]["duration_min"] == 60


def test_mkt_does_not_alert_one_reading_short_of_its_minimum_or_without_one():
    alerts, _ = run([order(profile="mkt")] + series([9] * 60), engine(**MKT_PROFILE))
    assert of_rule(alerts, "mkt") == []  # covers 59 minutes
    alerts, eng = run([order(profile="frozen")] + series([-10] * 200))  # no mkt_min_h
    assert of_rule(alerts, "mkt") == []
    assert eng.snapshot()["shipments"]["S1"]["mkt_c"] == pytest.approx(-10)


# --- humidity (fresh_produce: 85..95 %RH, 30 minutes) -----------------------------------------

def test_humidity_one_reading_short_of_the_rule_opens_nothing():
    lines = [order(profile="fresh_produce")] + [humid(i, h) for i, h in
                                                enumerate([90] + [97] * 30 + [90])]
    alerts, _ = run(lines)
    assert of_rule(alerts, "humidity") == []


def test_humidity_exactly_at_the_rule_opens_and_resolves_back_in_range():
    lines = [order(profile="fresh_produce")] + [humid(i, h) for i, h in
                                                enumerate([90] + [97] * 31 + [90])]
    alerts, _ = run(lines)
    assert of_rule(alerts, "humidity") == [("open", at(31)), ("resolved", at(32))]
    details = alerts[0]["details"]
    assert details["max_pct"] == 97 and details["limit_pct"] == 95
    assert details["duration_min"] == 30


def test_humidity_is_not_checked_without_a_humidity_range():
    lines = [order()] + [humid(i, 20) for i in range(60)]
    assert run(lines)[0] == []


# --- door left open (pharma_2_8: 5 minutes) ----------------------------------------------------

def test_door_open_exactly_the_limit_opens_nothing():
    lines = [order()] + [door(i, 10 <= i < 15) for i in range(30)]  # open 10..15
    assert of_rule(run(lines)[0], "door_open") == []
    still_open = [order()] + [door(i, i >= 10) for i in range(16)]  # open at 10, last at 15
    assert of_rule(run(still_open)[0], "door_open") == []


def test_door_open_longer_than_the_limit_opens_at_the_limit_and_resolves_when_closed():
    lines = [order()] + [door(i, 10 <= i < 16, temp=6.5 if i == 12 else 5.0) for i in range(30)]
    alerts, _ = run(lines)
    assert of_rule(alerts, "door_open") == [("open", at(15)), ("resolved", at(16))]
    details = alerts[0]["details"]
    assert details["started_at"] == at(10) and details["door_limit_min"] == 5
    assert details["max_c"] == 6.5


def test_door_max_c_covers_the_readings_up_to_the_limit():
    # the reading that shows the door closed (or still open) after the limit is not counted:
    # the alert is the same whether it is seen at that reading or earlier on the clock
    temps = {10: 5.0, 11: 5.5, 12: 5.0, 13: 5.0, 14: 5.0, 15: 6.0, 16: 7.0}
    lines = [order()] + [door(i, 10 <= i < 16, temp=temps.get(i, 5.0)) for i in range(20)]
    alerts, _ = run(lines)
    assert alerts[0]["details"]["rule"] == "door_open" and alerts[0]["details"]["max_c"] == 6.0


def test_door_fires_on_stream_time_without_the_device():
    # the rest of the fleet (two trucks' GPS) carries stream time on: it is the newest time
    # at least two devices have reached
    lines = [order(), door(0, False), door(10, True)] + [
        fix(11 + i, device=d) for i in range(30) for d in ("G1", "G2")]
    alerts, _ = run(lines)
    assert of_rule(alerts, "door_open") == [("open", at(15))]
    assert [a["at"] for a in alerts if a["kind"] == "sensor_silent"][:1] == [at(20)]


def test_door_open_while_unloading_is_expected():
    lines = [order(), door(0, False), scan(5, "unloaded")] + [door(6 + i, True) for i in range(30)]
    assert of_rule(run(lines)[0], "door_open") == []
    # an open alert is resolved by the unloaded scan
    lines = [order(), door(0, False)] + [door(1 + i, True) for i in range(10)] + [
        scan(11, "unloaded"), door(12, True)]
    assert of_rule(run(lines)[0], "door_open") == [("open", at(6)), ("resolved", at(11))]


# --- ordering, duplicates, batching --------------------------------------------------------

def one_by_one(lines, eng=None):
    eng = eng or Engine()
    return [a for raw in lines for a in eng.process([raw]).alerts] + eng.flush().alerts


def test_a_silence_due_before_the_delivery_in_the_same_batch_still_opens():
    # silent from minute 9: due at 19; the delivery at 25 ends the transit (and resolves it)
    lines = [order()] + series([5] * 10) + [fix(10 + i) for i in range(20)] + [
        order(minutes=25, status="delivered")] + [fix(30 + i) for i in range(20)]
    whole, _ = run(lines)
    silent = [(a["details"]["transition"], a["at"]) for a in whole
              if a["kind"] == "sensor_silent"]
    assert silent == [("opened", at(19)), ("resolved", at(25))]  # escalation: a notification
    assert sorted(map(str, whole)) == sorted(map(str, one_by_one(lines)))


def test_a_door_limit_passed_before_unloading_in_the_same_batch_still_opens():
    lines = [order(), door(0, False)] + [door(1 + i, True) for i in range(3)] + [
        fix(4 + i) for i in range(7)] + [scan(11, "unloaded")] + [fix(12 + i) for i in range(20)]
    whole, _ = run(lines)
    assert of_rule(whole, "door_open") == [("open", at(6)), ("resolved", at(11))]
    assert sorted(map(str, whole)) == sorted(map(str, one_by_one(lines)))



def test_business_events_at_one_time_emit_in_their_order_whatever_the_rule():
    """S2's delivery resolves its sensor's silence and S1's unloading at the same instant
    resolves its door alarm: the transitions come in the events' order, as one at a time."""
    s2 = partial(contract_order, "S2", profile="pharma_2_8_gdp", devices=("T2", "G2"))
    events = [(i, door(i, i >= 1)) for i in range(21)] + [
        (i, reading(i, 5.0, "T2")) for i in range(6)]
    events += [(i + 0.5, fix(i + 0.5, device=g)) for i in range(40) for g in ("G1", "G2")]
    events += [(25, scan(25, "delivered", "S2")), (25, scan(25, "unloaded"))]
    lines = [order(), s2()] + [raw for _, raw in sorted(events, key=lambda e: e[0])]
    whole, _ = run(lines)
    assert [(a["kind"], a["shipment_id"], a["state"]) for a in whole if a["at"] == at(25)] == [
        ("sensor_silent", "S2", "resolved"), ("temperature_excursion", "S1", "resolved")]
    assert whole == one_by_one(lines)

def mixed_stream():
    """Every cold-chain rule firing on three shipments, in event-time order."""
    temps = [5] + [9] * 40 + [5] * 3 + [9] * 30 + [5] * 46
    events = [(i, door(i, 50 <= i < 60, temp=t)) for i, t in enumerate(temps)]
    events += [(i, line(type="sensor", device_id="T2", ts=at(i), temp_c=3.0, humidity_pct=h))
               for i, h in enumerate([90] * 5 + [80] * 40 + [90] * 75)]
    events += [(i, reading(i, 9, device="T3")) for i in range(0, 120, 2)]
    events += [(i + 0.5, fix(i + 0.5)) for i in range(120)]
    return [order(), order("S2", profile="fresh_produce", devices=("T2",)),
            order("S3", profile="mkt", devices=("T3",))] + [
        raw for _, raw in sorted(events, key=lambda e: e[0])]


def test_every_rule_fires_on_the_mixed_stream():
    alerts, _ = run(mixed_stream(), engine(**MKT_PROFILE))
    rules = {a["details"].get("rule") for a in alerts if a["details"]["transition"] == "opened"}
    assert rules == {"continuous", "cumulative", "humidity", "door_open", "mkt"}


def test_out_of_order_within_lateness_and_duplicates_give_the_in_order_alerts():
    lines = mixed_stream()
    expected, _ = run(lines, engine(**MKT_PROFILE))
    rng = random.Random(3)
    shuffled = lines[:3] + sorted(lines[3:], key=lambda raw: lines.index(raw) + rng.uniform(0, 9))
    shuffled += rng.sample(lines[3:], 40)  # repeats: duplicates
    got, eng = run(shuffled, engine(**MKT_PROFILE))
    assert got == expected
    assert eng.snapshot()["counters"]["late_dropped"] == 0


def test_results_do_not_depend_on_batch_boundaries():
    lines = mixed_stream()
    whole, _ = run(lines, engine(**MKT_PROFILE))
    eng = engine(**MKT_PROFILE)
    pieces = []
    for i in range(0, len(lines), 11):
        pieces += eng.process(lines[i:i + 11]).alerts
    pieces += eng.flush().alerts
    assert sorted(map(str, pieces)) == sorted(map(str, whole))


# --- suggested action ----------------------------------------------------------------------

FENCES = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"fence_id": "CS-NEAR", "kind": "cold_store",
                                       "radius_m": 200},
     "geometry": {"type": "Point", "coordinates": [4.1, 52.0]}},
    {"type": "Feature", "properties": {"fence_id": "CS-FAR", "kind": "cold_store",
                                       "radius_m": 200},
     "geometry": {"type": "Point", "coordinates": [5.0, 52.0]}},
    {"type": "Feature", "properties": {"fence_id": "HUB", "kind": "hub", "radius_m": 200},
     "geometry": {"type": "Point", "coordinates": [4.01, 52.0]}},
]}


def test_cold_chain_alerts_suggest_the_nearest_cold_store_from_the_position_at_the_time():
    fences = FenceSet.from_geojson(FENCES)
    # the truck is at 4.0 E until minute 15, then at 4.9 E (nearer the other store)
    lines = [order()] + series([5] + [9] * 20 + [5]) + [fix(2, lon=4.0), fix(16.5, lon=4.9)]
    alerts, _ = run(lines, Engine(fences=fences))
    action = alerts[0]["details"]["suggested_action"]
    assert alerts[0]["details"]["rule"] == "continuous" and alerts[0]["at"] == at(16)
    assert action == {"action": "divert_to_cold_store", "fence_id": "CS-NEAR",
                      "distance_m": round(fences.distance_m(4.0, 52.0, "CS-NEAR"), 1)}
    assert 6_500 < action["distance_m"] < 7_000


def test_no_suggestion_without_fences_a_cold_store_or_a_position():
    lines = [order()] + series([5] + [9] * 20) + [fix(1)]
    assert "suggested_action" not in run(lines)[0][0]["details"]
    hubs = FenceSet.from_geojson({**FENCES, "features": FENCES["features"][2:]})
    assert "suggested_action" not in run(lines, Engine(fences=hubs))[0][0]["details"]
    no_fix = [order()] + series([5] + [9] * 20)
    fences = FenceSet.from_geojson(FENCES)
    assert "suggested_action" not in run(no_fix, Engine(fences=fences))[0][0]["details"]


def test_the_suggestion_does_not_depend_on_batching():
    fences = FenceSet.from_geojson(FENCES)
    lines = [order()] + [r for i in range(40) for r in (reading(i, 9 if 3 < i < 30 else 5),
                                                          fix(i + 0.5, lon=4.0 + 0.02 * i))]
    whole, _ = run(lines, Engine(fences=fences))
    pieces = one_by_one(lines, Engine(fences=fences))
    assert sorted(map(str, pieces)) == sorted(map(str, whole))
    assert any("suggested_action" in a["details"] for a in whole)


def test_a_whole_fleet_going_quiet_is_noticed_on_the_wall_clock():
    eng = Engine()
    eng.process([order()] + series([5] * 10), now=ms(9))  # live: arriving as they are made
    out = eng.advance(ms(9 + 10 + 5 + 1))  # wall clock: 26 min; minus 5 min of lateness
    assert [(a["kind"], a["at"]) for a in out.alerts] == [("sensor_silent", at(19))]
    out = eng.advance(ms(9 + 10 + 5 + 5 + 6))
    assert [(a["details"]["transition"], a["at"]) for a in out.notifications] == [
        ("escalated", at(24))]
