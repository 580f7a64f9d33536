"""Sinks, pacing, the CLI entry point and the alert scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chainsight.contract.times import iso
from chainsight.sim import (
    CallableSink,
    JsonlFileSink,
    MemorySink,
    Sink,
    parse_time,
    run,
    score_alerts,
    simulate,
)
from chainsight.sim.cli import simulate_main


@pytest.fixture(scope="module")
def sim():
    return simulate("smoke", shipments=30, duration="90m")


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.slept = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s
        self.slept += s


def test_file_sink_equals_write_jsonl(sim, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    stats = run(sim, JsonlFileSink(a), batch_size=1000)
    assert stats["sent"] == len(sim)
    assert sim.write_jsonl(b) == len(sim)
    assert a.read_bytes() == b.read_bytes()
    with JsonlFileSink(tmp_path / "c.jsonl") as s:  # lines and dicts are accepted too
        s.write(list(sim.iter_lines())[:10])
        s.write(next(sim.iter_batches(10))[:10])
    c = (tmp_path / "c.jsonl").read_bytes().split(b"\n")
    assert c[:10] == c[10:20] == a.read_bytes().split(b"\n")[:10]


def test_callable_and_memory_sinks(sim):
    got = []
    sink = CallableSink(got.extend)
    assert isinstance(sink, Sink)
    run(sim, sink, batch_size=500)
    assert got == list(sim)
    mem = MemorySink("lines")
    run(sim, mem)
    assert mem.closed and mem.items == list(sim.iter_lines())
    with pytest.raises(ValueError):
        CallableSink(print, wants="xml")


def test_rate_pacing(sim):
    clock = FakeClock()
    seen = []
    stats = run(sim, MemorySink("bytes"), rate=5000.0, clock=clock, sleep=clock.sleep,
                progress=lambda s, r, lag: seen.append((s, r, lag)))
    n = len(sim)
    assert stats["sent"] == n
    assert clock.t == pytest.approx((n - 1) / 5000.0, rel=0.01)
    assert seen[-1][0] == n and seen[-1][1] == pytest.approx(5000, rel=0.01)


def test_speedup_pacing_follows_arrival_clock(sim):
    clock = FakeClock()
    mem = MemorySink("dicts")
    run(sim, mem, speedup=600.0, clock=clock, sleep=clock.sleep)
    arr = sim.arrival_ms()
    assert clock.t == pytest.approx((arr[-1] - arr[0]) / 1000 / 600.0, rel=0.01)
    assert mem.items == list(sim)
    # each chunk was sent no earlier than its first event's due time
    both = FakeClock()
    run(sim, MemorySink("bytes"), rate=1e9, speedup=600.0, clock=both, sleep=both.sleep)
    assert both.t == pytest.approx(clock.t, rel=0.01)


def test_pacing_reports_lag_when_behind(sim):
    class SlowClock(FakeClock):
        def __call__(self):
            self.t += 0.01  # every look at the clock costs 10 ms
            return self.t

    clock = SlowClock()
    lags = []
    run(sim, MemorySink("lines"), rate=1e6, clock=clock, sleep=clock.sleep, progress_every_s=0,
        progress=lambda s, r, lag: lags.append(lag))
    assert max(lags) > 0


def test_bad_pacing_arguments(sim):
    with pytest.raises(ValueError):
        run(sim, MemorySink(), rate=0)


def test_cli_writes_events_truth_and_fences(tmp_path, capsys):
    ev, gt, fe = tmp_path / "ev.jsonl", tmp_path / "gt.json", tmp_path / "f.geojson"
    code = simulate_main(["--scenario", "smoke", "--shipments", "12", "--duration", "45m",
                          "--seed", "9", "--out", str(ev), "--ground-truth", str(gt),
                          "--fences-out", str(fe), "--ts-format", "ms", "--progress"])
    assert code == 0
    lines = ev.read_text().splitlines()
    truth = json.loads(gt.read_text())
    assert len(lines) == truth["counts"]["lines"] > 0
    assert truth["seed"] == 9 and truth["scenario"]["shipments"] == 12
    assert all(isinstance(json.loads(x)["ts"], int) for x in lines[:100])
    assert json.loads(fe.read_text())["type"] == "FeatureCollection"
    err = capsys.readouterr().err
    assert "sent" in err and "ev/s" in err and "lag" in err
    assert simulate_main(["--scenario", "nope", "--out", str(ev)]) == 2
    assert simulate_main(["--duration", "soon", "--out", str(ev)]) == 2


def _alerts_for(truth, delay_s=0.0):
    out = []
    for x in truth["excursions"]:
        if x["should_alert"]:
            at = parse_time(x["expected_open_at"]) + int(delay_s * 1000)
            out.append({"alert_id": "A-" + x["fault_id"], "kind": "temperature_excursion",
                        "state": "open", "shipment_id": x["shipment_id"],
                        "device_id": x["device_id"], "at": iso(at),
                        "details": {"started_at": x["start"]}})
            out.append({**out[-1], "state": "resolved", "at": x["resolved_at"]})
    return out


def test_score_alerts_perfect_and_imperfect():
    truth = simulate("demo").ground_truth()
    longs = [x for x in truth["excursions"] if x["should_alert"]]
    shorts = [x for x in truth["excursions"] if not x["should_alert"]]
    alerts = _alerts_for(truth, delay_s=30)
    r = score_alerts(truth, alerts)
    assert r["truth"] == len(longs) and r["negatives"] == len(shorts)
    assert r["precision"] == r["recall"] == 1.0 and r["false_positives"] == 0
    expected = [x["excursion_min"] * 60 + 30 for x in sorted(longs, key=lambda x: x["fault_id"])]
    assert [m["delay_s"] for m in r["matches"]] == pytest.approx(expected, abs=1.0)
    assert all(m["delay_vs_expected_s"] == pytest.approx(30) for m in r["matches"])

    short = shorts[0]
    fp = {"alert_id": "bad", "kind": "temperature_excursion", "state": "open",
          "shipment_id": short["shipment_id"], "at": short["end"], "details": {}}
    again = {**alerts[0], "alert_id": "again"}
    r = score_alerts(truth, alerts[2:] + [fp, again])
    assert r["true_positives"] == len(longs) and r["false_negatives"] == 0
    assert r["false_positives"] == 1 and r["alerts_on_negatives"] == 1
    assert r["duplicate_alerts"] == 0  # alerts[0] dropped, its re-send counts as the match
    assert r["precision"] == pytest.approx(len(longs) / (len(longs) + 1))

    r = score_alerts(truth, alerts[2:])
    assert r["recall"] == pytest.approx((len(longs) - 1) / len(longs))
    assert r["missed"] == [sorted(longs, key=lambda x: x["start_ms"])[0]["fault_id"]]
    assert score_alerts(truth, [])["precision"] == 1.0


def test_score_sensor_silent():
    truth = simulate("demo").ground_truth()
    sil = [f for f in truth["faults"] if f["type"] == "sensor_silence"]
    alerts = [{"alert_id": f"s{j}", "kind": "sensor_silent", "state": "open",
               "shipment_id": f["shipment_id"], "device_id": f["device_id"],
               "at": f["expected_alert_at"]} for j, f in enumerate(sil)]
    again = [{**a, "alert_id": a["alert_id"] + "-again"} for a in alerts]
    escalated = [{**a, "severity": "critical"} for a in alerts]  # same id: not a new alert
    r = score_alerts(truth, alerts + again + escalated, kind="sensor_silent")
    assert r["recall"] == 1.0 and r["precision"] == 1.0 and r["duplicate_alerts"] == len(sil)
    assert r["alerts"] == 2 * len(sil) and r["open_transitions"] == 3 * len(sil)
    assert r["delays_s"] == [600.0] * len(sil)
    with pytest.raises(ValueError):
        score_alerts(truth, [], kind="geofence_enter")


def test_arrival_ms_is_sorted(sim):
    assert np.all(np.diff(sim.arrival_ms()) >= 0)
