"""ETAs: trip features, throttled predictions, delayed-label learning, eta_late, ETA.jsonl,
and the model across restarts (embedded store, Kafka snapshot format) and export/import."""

from __future__ import annotations

import re
from collections import defaultdict

import httpx
import numpy as np
import orjson
import pytest
from api_server import api
from helpers import at, fix, line, ms, order

from chainsight.api.auth import TokenStore
from chainsight.cli import main
from chainsight.config import load_settings
from chainsight.contract.events import GPS
from chainsight.contract.times import parse_time
from chainsight.engine.core import Engine
from chainsight.engine.state import NO_TS
from chainsight.eta.features import (
    DUE,
    FIRST,
    STOP_ENDED,
    STOP_STARTED,
    track_trips,
    trip_columns,
)
from chainsight.eta.model import FEATURES, EtaModel
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import snapshots
from chainsight.runtimes.store import Store
from chainsight.sim import simulate

ORIGIN, DEST = {"lat": 52.0, "lon": 4.0}, {"lat": 52.0, "lon": 5.0}  # ~68.5 km apart
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


@pytest.fixture(scope="module")
def smoke():
    sim = simulate("smoke")
    return [orjson.dumps(e) for e in sim], FenceSet.from_geojson(sim.fences())


def run(engine, lines, size=400):
    outs = [engine.process(lines[i:i + size], now=ms(10**6)) for i in range(0, len(lines), size)]
    return [*outs, engine.flush()]


def etas_of(outs):
    return [r for out in outs for r in out.eta_records()]


def trip(promised_min, minutes=70, deliver_at=None, shipment="S1", device="G1",
         stop=(30, 36)):
    """An order going in transit at minute 0 from ORIGIN to DEST, fixes every minute at
    ~60 km/h along the way (standing still during `stop`), and a delivered scan."""
    lines = [order(shipment, minutes=0, status="shipped", devices=(device,), origin=ORIGIN,
                   destination=DEST, promised_by=at(promised_min))]
    lon = 4.0
    for m in range(1, minutes):
        if not stop[0] <= m < stop[1]:
            lon = min(5.0, lon + 1 / 69)
        lines.append(fix(m, lon=round(lon, 6), device=device, shipment_id=shipment))
    if deliver_at is not None:
        lines.append(line(type="scan", shipment_id=shipment, ts=at(deliver_at), site_id="D",
                          step="delivered"))
    return lines


# --- features and throttling -------------------------------------------------------------

def test_the_kernel_tracks_speed_stops_and_dwell_and_takes_samples_when_due():
    n = 1
    cols = trip_columns()
    cols.ensure(n)
    cols.dest_lat[0], cols.dest_lon[0] = 52.0, 5.0
    minutes = np.arange(0, 40)
    lon = np.where(minutes < 10, 4.0 + minutes / 69, 4.0 + 10 / 69)  # moves, then stands
    lon = np.where(minutes >= 25, lon + (minutes - 24) / 69, lon)  # and moves again
    ts = np.array([ms(m) for m in minutes.tolist()], np.int64)
    kind = np.full(len(ts), GPS, np.int8)
    ship = np.zeros(len(ts), np.int32)
    cap = 64
    out_ship, out_at = np.empty(cap, np.int64), np.empty(cap, np.int64)
    why, snap = np.empty(cap, np.int8), np.empty((cap, 9))
    count, nxt = track_trips(kind, ship, ts, np.full(len(ts), 52.0), lon, np.ones(n, bool),
                             cols.dest_lat, cols.fix_ts, cols.fix_lat, cols.fix_lon, cols.speed,
                             cols.stopped, cols.stop_start, cols.dwell_ms, cols.stops,
                             cols.depart, cols.last_at, 5 * 60_000, 0, out_ship, out_at, why,
                             snap)
    assert nxt == len(ts)
    samples = [(int(w), (int(a) - ms(0)) // 60_000)
               for w, a in zip(why[:count], out_at[:count], strict=True)]
    # the first fix; due every 5 minutes; the stop starting at the fix of minute 11 (no
    # movement since minute 10) and ending at minute 25: due times restart from there
    assert samples == [(FIRST, 0), (DUE, 5), (DUE, 10), (STOP_STARTED, 11), (DUE, 16),
                       (DUE, 21), (STOP_ENDED, 25), (DUE, 30), (DUE, 35)]
    assert cols.stops[0] == 1 and cols.dwell_ms[0] == 14 * 60_000  # fixes of minutes 10..24
    assert 35 < cols.speed[0] < 60  # km/h, recent: ~60 for 14 minutes after standing still
    due_in_stop = snap[4]  # due at minute 16, standing since minute 10
    assert due_in_stop[4] == 1 and due_in_stop[5] == 6 * 60_000
    assert cols.depart[0] == ms(0) and cols.last_at[0] == ms(35)


def test_etas_are_throttled_and_at_most_an_interval_apart():
    engine = Engine()
    etas = etas_of(run(engine, trip(promised_min=300, deliver_at=75)))
    times = [parse_time(r["at"]) for r in etas]
    fixes = 69
    assert 10 <= len(etas) < fixes // 3  # far fewer than fixes
    assert max(np.diff(times)) <= 5 * 60_000  # eta_interval_min
    assert times[0] == ms(0)  # as soon as it went in transit, from its origin
    assert etas[0]["remaining_km"] == pytest.approx(68.7, abs=0.5)
    assert engine.metrics()["eta_predictions"] == len(etas)
    assert engine.snapshot()["shipments"]["S1"]["eta"] is None  # delivered


@pytest.mark.parametrize("size", [3, 10_000])
def test_a_silent_tracker_still_gets_an_eta_every_interval(size):
    lines = trip(promised_min=300, minutes=11)
    lines += [fix(150, lon=4.5, shipment_id="S1"),
              line(type="scan", shipment_id="S1", ts=at(160), site_id="D", step="delivered")]
    times = [parse_time(r["at"]) for r in etas_of(run(Engine(), lines, size=size))]
    assert times[0] == ms(0) and times[-1] >= ms(155)
    assert max(np.diff(times)) <= 5 * 60_000 and len(times) < 40


def test_eta_jsonl_follows_the_contract_with_one_eta_per_10_minutes(smoke, tmp_path):
    events, fences_path = tmp_path / "events.jsonl", tmp_path / "fences.geojson"
    lines, _ = smoke
    events.write_bytes(b"\n".join(lines) + b"\n")
    sim = simulate("smoke")
    sim.write_fences(fences_path)
    out, state = tmp_path / "ETA.jsonl", tmp_path / "STATE.json"
    assert main(["replay", str(events), "--fences", str(fences_path), "--eta-out", str(out),
                 "--state-out", str(state), "--workers", "0"]) == 0
    records = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert records
    by_ship = defaultdict(list)
    for r in records:
        assert set(r) == {"shipment_id", "at", "eta", "remaining_km"}
        assert ISO.match(r["at"]) and ISO.match(r["eta"])
        assert isinstance(r["remaining_km"], float) and r["remaining_km"] >= 0
        assert parse_time(r["eta"]) >= parse_time(r["at"])
        by_ship[r["shipment_id"]].append(parse_time(r["at"]))
    for trip_truth in sim.ground_truth()["trips"]:
        if trip_truth["cancelled"] or not trip_truth["delivered_in_window"]:
            continue
        times = by_ship[trip_truth["shipment_id"]]
        assert times and max(np.diff(times), default=0) <= 10 * 60_000
        # from loading (in transit) to delivery
        assert times[0] <= parse_time(trip_truth["loaded_at"]) + 60_000
        assert times[-1] >= parse_time(trip_truth["delivered_at"]) - 10 * 60_000
    snapshot = orjson.loads(state.read_bytes())
    assert snapshot["eta_accuracy"]["eta_accuracy.samples"] > 0
    in_transit = [s for s in snapshot["shipments"].values() if s["status"] == "in_transit"]
    assert all(s["eta"] is None or ISO.match(s["eta"]) for s in snapshot["shipments"].values())
    assert not in_transit or any(s["eta"] for s in in_transit)


def test_eta_lines_are_the_records():
    engine = Engine()
    batches = [b for out in run(engine, trip(promised_min=300, deliver_at=75)) for b in out.etas]
    for batch in batches:
        assert [orjson.loads(x) for x in batch.jsonl().splitlines()] == batch.records()
    assert sum(len(b.at) for b in batches) > 10


# --- learning ---------------------------------------------------------------------------

def test_predictions_from_the_parameters_equal_rivers_predict_one():
    rng = np.random.default_rng(3)
    model = EtaModel()
    x = rng.uniform(0, 50, (200, len(FEATURES)))
    for k in range(0, 160, 8):
        model.learn(0, x[k:k + 8], x[k:k + 8, 0] * 1.3 + 5, 0, np.full(8, 9))
    want = [model.regressors[0].predict_one(dict(zip(FEATURES, row, strict=True)))
            for row in x[160:]]
    assert np.allclose(model.correction(x[160:], np.zeros(40, np.int64)), want)
    assert np.ptp(want) > 1  # it learned something
    restored = EtaModel()  # predicts from the numbers alone, learns on from them with River
    restored.load_state(model.dump_state())
    assert np.allclose(restored.correction(x[160:], np.zeros(40, np.int64)), want)
    for m in (model, restored):
        m.learn(0, x[:8], x[:8, 0] * 1.3 + 5, 0, np.full(8, 9))
    assert np.allclose(restored.correction(x[160:], np.zeros(40, np.int64)),
                       model.correction(x[160:], np.zeros(40, np.int64)))


def test_a_delivery_is_learned_from_once_event_time_has_passed_it_by_the_delay():
    engine = Engine()
    model = engine.eta_model
    run(engine, trip(promised_min=300, deliver_at=75))
    assert model.deliveries == 0 and model.learned == 0  # the label is known, not learned yet
    assert len(model.jobs) == 1 and model.jobs[0][0] == ms(75)
    job = model.jobs[0][2]
    assert 2 <= len(job["minutes"]) <= 8  # samples spread over the trip
    assert job["minutes"].max() > 60 and job["minutes"].min() >= 0  # minutes to delivery
    # another trip's ETAs, after the delay: the model learns before making them
    run(engine, trip(promised_min=400, deliver_at=200, shipment="S2", device="G2")[:1]
        + [fix(m, device="G2", shipment_id="S2") for m in range(100, 110)])
    assert model.deliveries == 1 and model.learned == len(job["minutes"])
    assert model.lanes.kmh(np.array([0]), np.array([0]))[0] == pytest.approx(68.5 / 1.25,
                                                                              rel=0.05)
    assert engine.metrics()["eta_accuracy.samples"] > 0


def test_the_model_learns_the_network_and_beats_the_baseline():
    """Trips that take 1.5 times what the lane's speed says from the midpoint on (a slow
    last stretch): after a few deliveries the model predicts the slowdown, the baseline not."""
    engine = Engine()
    for k in range(20):
        start = k * 240
        lines = [order(f"S{k}", minutes=start, status="shipped", devices=(f"G{k}",),
                       origin=ORIGIN, destination=DEST, promised_by=at(start + 300))]
        lon = 4.0
        for m in range(1, 110):
            lon = min(5.0, lon + (1 / 69 if m < 35 else 1 / 69 / 2.2))
            lines.append(fix(start + m, lon=round(lon, 6), device=f"G{k}",
                             shipment_id=f"S{k}"))
        lines.append(line(type="scan", shipment_id=f"S{k}", ts=at(start + 110), site_id="D",
                          step="delivered"))
        run(engine, lines)
    assert engine.eta_model.deliveries >= 10
    metrics = engine.metrics()
    assert metrics["eta_accuracy.model.mae_min"] < 0.7 * metrics["eta_accuracy.baseline.mae_min"]


# --- eta_late ---------------------------------------------------------------------------

def test_eta_late_opens_and_resolves_at_the_etas_that_cross_the_promise():
    # promised in 40 minutes, ~70 minutes away: late from the start; the promise moves to
    # minute 240 at minute 20 (back within), then to minute 40 at minute 45 (late again);
    # delivered at minute 72
    lines = trip(promised_min=40)
    lines.insert(21, order("S1", minutes=20, status="in_transit", devices=("G1",),
                           origin=ORIGIN, destination=DEST, promised_by=at(240)))
    lines.insert(47, order("S1", minutes=45, status="in_transit", devices=("G1",),
                           origin=ORIGIN, destination=DEST, promised_by=at(40)))
    lines.append(line(type="scan", shipment_id="S1", ts=at(72), site_id="D", step="delivered"))
    engine = Engine(load_settings(alert_quiet_min=0))
    outs = run(engine, lines, size=7)
    alerts = [r for out in outs for r in out.settled if r["kind"] == "eta_late"]
    etas = [(parse_time(r["at"]), parse_time(r["eta"])) for r in etas_of(outs)]
    transitions = [(r["state"], r["at"]) for r in alerts]
    assert [s for s, _ in transitions] == ["open", "resolved", "open", "resolved"]
    assert transitions[0][1] == at(0)  # the first ETA, from the origin, already too late
    assert alerts[0]["details"]["promised_by"] == at(40)
    assert alerts[0]["details"]["margin_min"] == 30
    back = next(t for t, e in etas if t >= ms(20) and e <= ms(240 + 30))
    assert transitions[1][1] == at((back - ms(0)) / 60_000)  # the first ETA after the move
    late_again = next(t for t, e in etas if t >= ms(45) and e > ms(40 + 30))
    assert transitions[2][1] == at((late_again - ms(0)) / 60_000)
    assert transitions[3][1] == at(72) and alerts[3]["details"]["delivered_at"] == at(72)
    assert alerts[0]["alert_id"] != alerts[2]["alert_id"]
    assert engine.snapshot()["shipments"]["S1"]["open_alerts"] == []


def test_eta_late_is_live_and_provisional_then_settled():
    lines = trip(promised_min=40, minutes=30)
    engine = Engine(load_settings(allowed_lateness_min=2), live=True)
    published = [r for out in run(engine, lines, size=5) for r in out.alerts
                 if r["kind"] == "eta_late"]
    assert published[0]["state"] == "open" and published[0]["provisional"] is True
    assert published[0]["at"] == at(0)
    assert not [r for r in published if r["state"] == "retracted"]
    assert engine.alert(published[0]["alert_id"])["provisional"] is False  # settled since
    assert engine.shipments(["S1"])["S1"]["eta"] is not None


def test_the_api_shows_etas_and_their_accuracy(tmp_path):
    engine = Engine(live=True)
    run(engine, trip(promised_min=300, deliver_at=75))
    run(engine, trip(promised_min=400, shipment="S2", device="G2")[:1]
        + [fix(m, lon=4.2, device="G2", shipment_id="S2") for m in range(100, 120)])
    token = TokenStore(tmp_path).create("dispatcher", "dee")
    with api(tmp_path, engine) as (url, _, _):
        metrics = httpx.get(url + "/metrics").text
        shipment = httpx.get(url + "/v1/shipments/S2",
                             headers={"Authorization": f"Bearer {token}"}).json()
    model_mae = [float(m.split()[-1]) for m in metrics.splitlines()
                 if m.startswith('chainsight_eta_mae_min{hours_out="all",who="model"}')]
    assert model_mae and model_mae[0] > 0
    assert 'chainsight_eta_mape{hours_out="0-1h",who="baseline"}' in metrics
    predictions = next(float(m.split()[-1]) for m in metrics.splitlines()
                       if m.startswith("chainsight_eta_predictions_total "))
    assert predictions == engine.metrics()["eta_predictions"] > 0
    assert ISO.match(shipment["eta"]) and parse_time(shipment["eta"]) > ms(119)


# --- persistence and export -----------------------------------------------------------------

def _continue_alike(smoke, restart):
    """An engine run over the whole stream, and one run over the first half of it by
    `restart(lines, batches) -> engine` (which restores it into a new engine), then over the
    rest, publish the same ETAs and alerts after the cut, and end in the same state."""
    lines, fences = smoke
    cut = len(lines) // 2
    batches = [(i, min(i + 400, cut)) for i in range(0, cut, 400)]
    whole = Engine(fences=fences)
    first = [whole.process(lines[a:b], now=ms(10**6)) for a, b in batches]
    rest = [whole.process(lines[i:i + 400], now=ms(10**6)) for i in range(cut, len(lines), 400)]
    rest.append(whole.flush())
    assert len(etas_of(first)) > 0
    again = restart(lines, batches)
    assert again.eta_model.jobs  # deliveries still to learn from, then more
    got = [again.process(lines[i:i + 400], now=ms(10**6)) for i in range(cut, len(lines), 400)]
    got.append(again.flush())
    assert etas_of(got) == etas_of(rest) and len(etas_of(rest)) > 100
    assert [r for o in got for r in o.settled] == [r for o in rest for r in o.settled]
    assert again.metrics() == whole.metrics() and again.eta_model.deliveries > 0


def test_the_model_survives_a_kafka_snapshot_round_trip(smoke):
    def restart(lines, batches):
        half = Engine(fences=smoke[1])
        for a, b in batches:
            half.process(lines[a:b], now=ms(10**6))
        again = Engine(fences=smoke[1])
        again.load_state(snapshots.decode(snapshots.encode(half.dump_state())))
        return again

    _continue_alike(smoke, restart)


def test_the_model_survives_a_restart_of_the_embedded_store(smoke, tmp_path):
    def restart(lines, batches):
        store, engine = Store(tmp_path / "engine"), Engine(fences=smoke[1])
        store.recover(engine)
        for k, (a, b) in enumerate(batches):
            store.process(engine, lines[a:b], now=ms(10**6))
            if k == len(batches) // 2:
                store.snapshot(engine)  # then a log of the calls after it
        store.sync()
        store.close()  # the process dies; a new one recovers the directory
        again = Engine(fences=smoke[1])
        assert Store(tmp_path / "engine").recover(again) > 0
        return again

    _continue_alike(smoke, restart)


def test_the_model_is_exported_and_imported(smoke, tmp_path):
    lines, _ = smoke
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    model = tmp_path / "model.json"
    assert main(["replay", str(events), "--eta-model-out", str(model), "--workers", "0"]) == 0
    doc = orjson.loads(model.read_bytes())
    assert doc["format"] == "chainsight-eta-model" and doc["features"] == list(FEATURES)
    trained = EtaModel.import_(model.read_bytes())
    assert trained.deliveries > 0 and trained.lanes.index
    engine = Engine()
    engine.import_eta_model(model.read_bytes())
    assert engine.eta_model.deliveries == trained.deliveries
    x = np.random.default_rng(1).uniform(0, 40, (5, len(FEATURES)))
    zero = np.zeros(5, np.int64)
    assert np.allclose(engine.eta_model.correction(x, zero), trained.correction(x, zero))
    again = tmp_path / "again.json"
    assert main(["replay", str(events), "--eta-model", str(model), "--eta-model-out",
                 str(again), "--workers", "0"]) == 0
    assert EtaModel.import_(again.read_bytes()).deliveries > trained.deliveries


def test_a_file_that_is_not_a_model_is_refused_in_one_line(tmp_path, capsys):
    events, bad = tmp_path / "events.jsonl", tmp_path / "bad.json"
    events.write_bytes(trip(promised_min=100)[0] + b"\n")
    bad.write_bytes(b'{"format": "something else"}')
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(events), "--eta-model", str(bad), "--alerts-out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an ETA model" in err and "\n" not in err
    assert not out.exists()


def test_etas_off_publish_nothing():
    engine = Engine(load_settings(eta=False))
    outs = run(engine, trip(promised_min=10, deliver_at=75))
    assert not etas_of(outs) and engine.eta_model is None
    assert not [r for o in outs for r in o.settled if r["kind"] == "eta_late"]
    assert engine.shipments(["S1"])["S1"]["eta"] is None
    assert NO_TS < 0
