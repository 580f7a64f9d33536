"""Live results: alerts published the moment they are true (provisional), settled exactly.

For any stream whose disorder stays within the allowed lateness, the live stream minus its
withdrawn transitions equals the settled stream, and the settled stream equals the in-order run.
"""

from collections import Counter

import orjson
from helpers import at, fix, ms, order, reading
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chainsight.config import Profile, load_profiles, load_settings
from chainsight.contract.commands import Acknowledge
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import snapshots
from chainsight.sim import simulate

HUB = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "properties": {"fence_id": "HUB", "kind": "hub", "dwell_max_min": 8},
    "geometry": {"type": "Polygon", "coordinates": [
        [[3.99, 51.99], [4.01, 51.99], [4.01, 52.01], [3.99, 52.01], [3.99, 51.99]]]}}, {
    "type": "Feature", "properties": {"fence_id": "ROAD", "kind": "corridor", "width_m": 2000},
    "geometry": {"type": "LineString", "coordinates": [[3.9, 52.0], [4.1, 52.0]]}}, {
    "type": "Feature", "properties": {"fence_id": "COLD", "kind": "cold_store"},
    "geometry": {"type": "Point", "coordinates": [4.2, 52.1]}}]}
HUB["features"][2]["properties"]["radius_m"] = 300
FENCES = FenceSet.from_geojson(HUB)
LATENESS_MIN = 5
# every cold-chain rule, with limits short enough for a 45-minute trip
PROFILES = {"all_rules": Profile("all_rules", 2, 8, 5, humidity_min=85, humidity_max=95,
                                 cumulative_budget_min=8, door_open_max_min=3, mkt_min_h=0.2)}


def canonical(record: dict) -> bytes:
    record = {k: v for k, v in record.items() if k != "provisional"}
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def minus_withdrawn(stream: list[dict]) -> Counter:
    """The live stream's records, each withdrawn one taken out (as a multiset)."""
    kept: Counter = Counter()
    published: dict[tuple, list[bytes]] = {}
    for record in stream:
        if record["state"] == "retracted":
            w = record["details"]["withdraws"]
            key = published[(record["alert_id"], w["state"], w["at"])].pop()
            kept[key] -= 1
        else:
            key = canonical(record)
            kept[key] += 1
            published.setdefault((record["alert_id"], record["state"], record["at"]),
                                 []).append(key)
    return +kept


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], list[int]]:
    """(events in event-time order, the same in arrival order, batch sizes): three reefer
    trucks, readings that stray out of range, positions in and out of a hub, sensors that fall
    silent, and arrival delays up to just under the allowed lateness."""
    timed: list[tuple[float, bytes]] = []
    for i in range(1, 4):
        timed.append((-30, order(f"S{i}", devices=(f"T{i}", f"G{i}"), minutes=-30,
                                 profile="all_rules", corridor_id="ROAD")))
        silent_from = draw(st.integers(10, 60))
        temps = draw(st.lists(st.sampled_from([4.0, 5.0, 9.5, 11.0, 1.0]), min_size=45,
                              max_size=45))
        humid = draw(st.lists(st.sampled_from([90.0, 80.0]), min_size=45, max_size=45))
        doors = draw(st.lists(st.booleans(), min_size=45, max_size=45))
        inside = draw(st.lists(st.booleans(), min_size=45, max_size=45))
        for m in range(45):
            if m < silent_from:
                timed.append((m, reading(m, temps[m], device=f"T{i}", humidity_pct=humid[m],
                                         door_open=doors[m])))
            lat = 52.0 if inside[m] else 52.05
            timed.append((m + 0.5, fix(m + 0.5, lat=lat, device=f"G{i}")))
    in_order = [line for _, line in sorted(timed, key=lambda t: t[0])]
    delays = draw(st.lists(st.floats(0, LATENESS_MIN - 0.5), min_size=len(timed),
                           max_size=len(timed)))
    # mostly small delays, some up to just under the lateness
    arrival = sorted(zip(timed, delays, strict=True),
                     key=lambda p: p[0][0] + p[1] * p[1] / (LATENESS_MIN - 0.5))
    batches = draw(st.lists(st.integers(1, 40), min_size=1, max_size=20))
    return in_order, [line for (_, line), _ in arrival], batches


def engine(live: bool = False) -> Engine:
    return Engine(profiles={**load_profiles(), **PROFILES}, fences=FENCES, live=live)


def run_live(lines: list[bytes], batches: list[int],
             ) -> tuple[list[dict], list[dict], Engine]:
    """(live stream, settled stream, the engine) of a live engine fed `lines` in these batch
    sizes."""
    engine = globals()["engine"](live=True)
    live, settled = [], []
    i, k = 0, 0
    while i < len(lines):
        n = batches[k % len(batches)]
        out = engine.process(lines[i:i + n], now=ms(60))
        live += out.alerts
        settled += out.settled
        i, k = i + n, k + 1
    out = engine.flush()
    return live + out.alerts, settled + out.settled, engine


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_live_minus_withdrawn_is_the_settled_stream_which_is_the_in_order_run(stream):
    in_order, arrival, batches = stream
    reference = engine()
    want = [r for out in (reference.process(in_order, now=ms(60)), reference.flush())
            for r in out.alerts]
    live, settled, live_engine = run_live(arrival, batches)
    assert Counter(map(canonical, settled)) == Counter(map(canonical, want))
    assert minus_withdrawn(live) == Counter(map(canonical, settled))
    # the live state's MKT too: readings of order-linked devices re-run after a late one
    assert {s: v["mkt_c"] for s, v in live_engine.shipments().items()} == {
        s: v["mkt_c"] for s, v in reference.snapshot()["shipments"].items()}
    event(" ".join(sorted({r["details"].get("rule", r["kind"]) for r in settled})))


def test_an_excursion_is_published_with_the_reading_that_completes_it():
    """Lateness 5 minutes: the settled open would come 5 minutes later; the live one comes
    with the reading of minute 15, provisional, and is confirmed without a new record."""
    engine = Engine(live=True)
    engine.process([order(), fix(-1, device="G1"), fix(-1, device="G2")], now=ms(-1))
    published = []
    for m in range(40):
        temp = 9.0 if m < 25 else 5.0
        out = engine.process([reading(m, temp), fix(m, device="G1"), fix(m, device="G2")],
                             now=ms(m))
        published += [(m, r["state"], r["at"], r.get("provisional")) for r in out.alerts]
        if m == 15:
            assert [(r["state"], r["at"]) for r in out.alerts] == [("open", at(15))]
            assert out.settled == []
    assert published == [(15, "open", at(15), True), (25, "resolved", at(25), True)]
    opened = engine.alerts(kind="temperature_excursion")[0]
    assert opened["state"] == "resolved" and opened["provisional"] is False  # settled


def test_a_sensor_whose_readings_arrive_late_is_not_silent_live_but_a_silent_one_is_at_once():
    """T1's clock runs 9.75 minutes behind: a reading a minute, each arriving 9.75 minutes after
    its time, so between two of them the stream is up to 10.75 minutes past its last one. T2
    stops after minute 20: live, its silence is published as the stream passes minute 30."""
    engine = Engine(live=True)
    engine.process([order("S1", devices=("T1", "G1")), order("S2", devices=("T2", "G2"))],
                   now=ms(-1))
    published = []
    for half in range(2 * 60):
        m = half / 2
        lines = [fix(m, device="G1"), fix(m, device="G2")]
        if half % 2 == 0:
            lines += [reading(m - 9.75, 5.0)] + ([reading(m, 5.0, device="T2")] if m <= 20 else [])
        out = engine.process(lines, now=ms(m))
        published += [(m, r["device_id"], r["state"], r["at"]) for r in out.alerts
                      if r["kind"] == "sensor_silent"]
    assert published == [(30.5, "T2", "open", at(30))]  # settled it would come at 35.5


def test_how_late_a_sensors_readings_arrive_does_not_depend_on_the_batches():
    """T1's readings arrive 9.75 minutes behind the stream, until minute 15, T2's on time."""
    lines = [line for m in range(30) for line in (
        fix(m, device="G1"), fix(m, device="G2"), reading(m, 5.0, "T2"),
        *([reading(m - 9.75, 5.0)] if m < 15 else []))]
    for size in (1, 7, len(lines)):
        engine = Engine(live=True)
        for i in range(0, len(lines), size):
            engine.process(lines[i:i + size], now=ms(29))
        delays = engine.arrival_delays.devices.delay
        ids = engine.state.devices.index
        assert (delays[ids["T1"]], delays[ids["T2"]]) == (ms(9.75) - ms(0), 0), size


def test_a_late_event_that_breaks_an_excursion_withdraws_it_at_once():
    engine = Engine(live=True)
    engine.process([order(), fix(-1, device="G1"), fix(-1, device="G2")], now=ms(-1))
    lines = [line for m in range(17) if m != 12 for line in (
        reading(m, 9.0), fix(m, device="G1"), fix(m, device="G2"))]
    out = engine.process(lines, now=ms(16))
    (opened,) = [r for r in out.alerts if r["kind"] == "temperature_excursion"]
    assert opened["provisional"] and opened["at"] == at(15)
    # minute 12 (late, but within the lateness) was inside the range: no 15 minutes outside
    out = engine.process([reading(12, 5.0)], now=ms(16))
    (withdrawal,) = out.alerts
    assert withdrawal["alert_id"] == opened["alert_id"] and withdrawal["state"] == "retracted"
    assert withdrawal["details"]["withdraws"] == {"state": "open", "at": at(15)}
    assert withdrawal["details"]["transition"] == "retracted" and withdrawal["details"]["reason"]
    assert engine.alerts(kind="temperature_excursion") == []


def test_a_provisional_alert_can_be_acknowledged_and_the_action_settles():
    engine = Engine(live=True)
    engine.process([order(), fix(-1, device="G1"), fix(-1, device="G2")], now=ms(-1))
    for m in range(17):
        out = engine.process([reading(m, 9.0), fix(m, device="G1"), fix(m, device="G2")],
                             now=ms(m))
    aid = engine.alerts()[0]["alert_id"]
    (ack,) = engine.apply(Acknowledge(aid, "alice", "on my way")).alerts
    assert ack["state"] == "acknowledged" and ack["provisional"] and ack["at"] == at(16)
    settled = []
    for m in range(17, 40):
        out = engine.process([reading(m, 9.0), fix(m, device="G1"), fix(m, device="G2")],
                             now=ms(m))
        settled += out.settled
        assert all(r["state"] != "retracted" for r in out.alerts)
    assert [(r["details"]["transition"], r["details"].get("user")) for r in settled] == [
        ("opened", None), ("acknowledged", "alice")]
    assert engine.alert(aid)["provisional"] is False


def test_an_action_that_late_events_make_too_late_stays_in_the_audit_trail_with_why():
    """The user was told the acknowledgement was taken: when late events withdraw the alert
    (or resolve it before the action), the settled trail keeps the action, hash-chained."""
    engine = Engine(live=True)
    engine.process([order(), fix(-1, device="G1"), fix(-1, device="G2")], now=ms(-1))
    engine.process([line for m in range(17) if m != 12 for line in (
        reading(m, 9.0), fix(m, device="G1"), fix(m, device="G2"))], now=ms(16))
    (alert,) = engine.alerts(kind="temperature_excursion")
    engine.apply(Acknowledge(alert["alert_id"], "alice", "on my way", recorded_at=ms(17)))
    engine.process([reading(12, 5.0)], now=ms(17))  # late: inside the range, no excursion
    assert engine.alerts(kind="temperature_excursion") == []
    engine.flush()
    (kept,) = engine.audit_trail(alert["alert_id"])
    assert kept["transition"] == "not_applied" and kept["who"] == "alice"
    assert kept["details"]["action"] == "acknowledge" and "withdrawn" in kept["details"]["reason"]
    assert kept["comment"] == "on my way" and kept["at"] == at(16) and "hash" in kept
    assert engine.verify_audit()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.integers(1, 12))
def test_a_live_engine_restored_from_a_snapshot_publishes_exactly_the_same(stream, cut):
    """What a worker killed after a snapshot republishes must be byte-identical (so that the
    records it had written are recognised and not written twice)."""
    _, arrival, _ = stream
    batches = [arrival[i:i + 25] for i in range(0, len(arrival), 25)]

    def run(restore_at: int | None) -> list[bytes]:
        live, out = engine(live=True), []
        for k, batch in enumerate(batches):
            if k == restore_at:
                data = snapshots.decode(snapshots.encode(live.dump_state()))
                live = engine(live=True)
                live.load_state(data)
            got = live.process(batch, now=ms(60))
            out += [orjson.dumps(r) for r in got.alerts + got.notifications]
        return out + [orjson.dumps(r) for r in live.flush().alerts]

    assert run(min(cut, len(batches) - 1)) == run(None)


def test_a_person_notified_about_a_withdrawn_alert_hears_it_was_withdrawn():
    """Escalation counts from the provisional open; when that open is withdrawn, the
    notification channel carries the withdrawal too."""
    live = Engine(load_settings(escalate_after_min=2), {**load_profiles(), **PROFILES},
                  live=True)
    fleet = [fix(-1, device=d) for d in ("G1", "G2")]
    live.process([order(profile="all_rules")] + fleet, now=ms(-1))
    notes = []
    for m in range(10):  # out of range from minute 0: open at 5, escalated at 7
        if m != 4:  # minute 4 arrives late, below
            out = live.process([reading(m, 9.0)] + [fix(m, device=d) for d in ("G1", "G2")],
                               now=ms(m))
            notes += out.notifications
    assert ("escalated", at(7)) in [(n["details"]["transition"], n["at"]) for n in notes
                                    if n["details"].get("rule") == "continuous"]
    out = live.process([reading(4, 5.0)], now=ms(9))  # in range at 4: not 5 minutes out at 5
    (withdrawn,) = [r for r in out.alerts if r["state"] == "retracted"
                    and r["details"]["withdraws"] == {"state": "open", "at": at(5)}]
    assert [n for n in out.notifications
            if n["state"] == "retracted" and n["alert_id"] == withdrawn["alert_id"]]


def test_a_simulated_fleet_live_and_settled(tmp_path):
    """A simulated fleet with faults (skewed clocks, offline bursts, duplicates), fences and
    small batches: the settled stream is replay's, the live one minus withdrawals too, and
    withdrawals are rare."""
    sim = simulate("smoke")
    fences = FenceSet.from_geojson(sim.fences())
    lines = [orjson.dumps(e) for e in sim]
    reference = Engine(fences=fences)
    want = [r for out in (reference.process(lines), reference.flush()) for r in out.alerts]
    live, published, settled = Engine(fences=fences, live=True), [], []
    for i in range(0, len(lines), 300):
        out = live.process(lines[i:i + 300])
        published += out.alerts
        settled += out.settled
    out = live.flush()
    published += out.alerts
    settled += out.settled
    assert Counter(map(canonical, settled)) == Counter(map(canonical, want))
    assert minus_withdrawn(published) == Counter(map(canonical, want))
    withdrawn = sum(r["state"] == "retracted" for r in published)
    assert withdrawn == sum(n for k, n in live.metrics().items() if k.startswith("retracted."))
    assert withdrawn < 0.02 * len(want)


def test_the_audit_trail_shows_unsettled_transitions_and_actions_then_their_settled_entries():
    engine = Engine(live=True)  # allowed lateness 5 min: nothing below settles before flush
    lines = [order("S1", customer_id="C1", devices=("T1", "G1"))]
    for minute in range(21):
        lines += [reading(minute, 5 if minute == 0 else 11, device="T1"), fix(minute)]
    engine.process(lines, now=ms(21))
    (alert,) = engine.alerts(kind="temperature_excursion")
    engine.apply(Acknowledge(alert["alert_id"], "qa", "on it", recorded_at=ms(22)))
    pending = engine.audit_trail(alert["alert_id"])
    assert [(e["state"], e["details"].get("user"), e["provisional"]) for e in pending] == [
        ("open", None, True), ("acknowledged", "qa", True)]
    assert not any("hash" in e for e in pending)
    engine.flush()  # event time passes them: settled, in the hash chain
    settled = engine.audit_trail(alert["alert_id"])
    assert [(e["state"], e["details"].get("user")) for e in settled] == [
        ("open", None), ("acknowledged", "qa")]
    assert all("hash" in e and "provisional" not in e for e in settled)
