"""`chainsight replay` end to end: files in, the contract's files out, exit codes."""

import json
import os
import subprocess
import sys

import orjson
from helpers import at, fix, order, reading, series

from chainsight.cli import main

CLI = [sys.executable, "-m", "chainsight.cli"]


def write_events(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


def replay(tmp_path, *extra):
    out = {name: tmp_path / name for name in ("alerts.jsonl", "dlq.jsonl", "state.json")}
    proc = subprocess.run(
        [*CLI, "replay", str(tmp_path / "events.jsonl"), "--alerts-out", str(out["alerts.jsonl"]),
         "--dead-letter-out", str(out["dlq.jsonl"]), "--state-out", str(out["state.json"]),
         *extra], capture_output=True, text=True, timeout=120)
    return proc, out


def test_replay_writes_alerts_dead_letters_and_state(tmp_path):
    lines = [order()] + series([5] + [9] * 20 + [5] * 5) + [fix(3), b'{"type":"gps"}', b"{bad"]
    write_events(tmp_path / "events.jsonl", lines)
    proc, out = replay(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "events/s" in proc.stderr
    alerts = [json.loads(x) for x in out["alerts.jsonl"].read_text().splitlines()]
    assert [(a["kind"], a["state"]) for a in alerts] == [
        ("temperature_excursion", "open"), ("temperature_excursion", "resolved")]
    assert set(alerts[0]) >= {"alert_id", "kind", "state", "shipment_id", "device_id",
                              "severity", "at", "details"}
    dead = [json.loads(x) for x in out["dlq.jsonl"].read_text().splitlines()]
    assert [(d["line"], d["payload"]) for d in dead] == [(29, '{"type":"gps"}'), (30, "{bad")]
    assert all(d["reason"] for d in dead)
    state = json.loads(out["state.json"].read_text())
    assert state["counters"] == {"events": 28, "rejected": 2, "duplicates": 0, "late_dropped": 0}
    assert state["shipments"]["S1"]["last_position"]["lat"] == 52.0


def test_replay_is_deterministic(tmp_path):
    write_events(tmp_path / "events.jsonl", [order()] + series([5] + [1] * 40 + [4] * 3))
    first = replay(tmp_path)[1]["alerts.jsonl"].read_text()
    assert first and replay(tmp_path)[1]["alerts.jsonl"].read_text() == first


def test_unreadable_input_fails_with_one_line(tmp_path):
    proc, _ = replay(tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "events.jsonl" in proc.stderr


def test_decode_workers_give_the_same_outputs_as_one_process(tmp_path, monkeypatch):
    import chainsight.runtimes.replay as replay_module
    import chainsight.runtimes.shared as shared_module
    from chainsight.engine.core import Engine
    from chainsight.geofence import FenceSet
    from chainsight.sim import simulate

    sim = simulate("smoke")
    events = tmp_path / "events.jsonl"
    sim.write_jsonl(events)
    with open(events, "ab") as f:
        f.write(b'{"type":"gps","device_id":"X"}\nnot json\n')
    monkeypatch.setattr(replay_module, "CHUNK_BYTES", 500_000)  # many ranges, in order
    shared = tmp_path / "shared"  # where decode processes leave their batches' columns
    shared.mkdir()
    monkeypatch.setattr(shared_module, "MEMORY", str(shared))
    outputs = []
    for workers in (0, 2):
        out = tmp_path / str(workers)
        out.mkdir()
        result = replay_module.replay(
            events, Engine(fences=FenceSet.from_geojson(sim.fences())), out / "alerts.jsonl",
            out / "dlq.jsonl", out / "state.json", workers=workers)
        outputs.append([(out / name).read_bytes()
                        for name in ("alerts.jsonl", "dlq.jsonl", "state.json")])
        assert result.rejected == 2
        assert list(shared.iterdir()) == []
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"\n") > 100


def test_a_record_made_with_decode_workers_holds_what_the_engine_records_itself(tmp_path):
    """Replay's decode processes make the JSON of scans and orders the record holds: the same
    bytes as the engine's own (its live runtimes')."""
    import numpy as np

    import chainsight.runtimes.replay as replay_module
    from chainsight.config import load_settings
    from chainsight.engine.core import Engine
    from chainsight.sim import simulate
    from chainsight.trace.chain import first_broken
    from chainsight.trace.record import business_events, readings

    sim = simulate("smoke")
    events = tmp_path / "events.jsonl"
    sim.write_jsonl(events)
    settings = load_settings(record_block_min=None)
    replay_module.replay(events, Engine(settings, record=True), workers=2,
                         record_out=tmp_path / "record.jsonl")
    itself = Engine(settings, record=True)
    lines = events.read_bytes().splitlines()
    made = [e.line for e in itself.process(lines).extend(itself.flush()).record]
    by_shipment: list[dict[str, list[dict]]] = [{}, {}]
    for kept, written in zip(by_shipment, [(tmp_path / "record.jsonl").read_bytes().splitlines(),
                                           made], strict=True):
        for entry in map(orjson.loads, written):
            kept.setdefault(entry["shipment_id"], []).append(entry)
    replayed, recorded = by_shipment
    assert replayed.keys() == recorded.keys() and len(replayed) > 5
    for shipment, entries in replayed.items():
        assert first_broken(entries) is None  # the events' JSON is canonical: sorted keys
        assert business_events(entries) == business_events(recorded[shipment]) != []
        assert np.array_equal(readings(entries).ts, readings(recorded[shipment]).ts)


def test_small_files_are_decoded_without_workers():
    from chainsight.runtimes.replay import POOL_MIN_BYTES, default_workers

    assert default_workers(POOL_MIN_BYTES - 1) == 0
    assert default_workers(POOL_MIN_BYTES) == default_workers()


def test_replay_writes_the_live_stream_with_the_lines_consumed(tmp_path):
    """--live-alerts-out: the live stream as a live runtime would publish it; minus withdrawn
    transitions it is ALERTS.jsonl; each record comes at most 1,000 lines after the line that
    completed it."""
    lines = [order(), fix(-1, device="G1"), fix(-1, device="G2")]
    lines += [x for m in range(40) for x in (reading(m, 9.0 if m < 25 else 5.0),
                                             fix(m, device="G1"), fix(m, device="G2"))]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    alerts, live = tmp_path / "alerts.jsonl", tmp_path / "live.jsonl"
    assert main(["replay", str(events), "--alerts-out", str(alerts),
                 "--live-alerts-out", str(live)]) == 0
    settled = [orjson.loads(x) for x in alerts.read_bytes().splitlines()]
    published = [orjson.loads(x) for x in live.read_bytes().splitlines()]
    assert [(r["state"], r["at"]) for r in settled] == [("open", at(15)), ("resolved", at(25))]
    assert [{k: v for k, v in r.items() if k not in ("provisional", "line")}
            for r in published] == settled
    completing = {at(15): lines.index(reading(15, 9.0)) + 1,
                  at(25): lines.index(reading(25, 5.0)) + 1}
    assert all(r["provisional"] and 0 <= r["line"] - completing[r["at"]] <= 1000
               for r in published)


def test_a_killed_replays_shared_memory_is_removed_by_the_next(tmp_path, monkeypatch):
    """Decoded batches wait in shared memory (a directory per replay, named after its
    process): what a killed replay left there is removed; a running one's is not."""
    import chainsight.runtimes.replay as replay_module
    import chainsight.runtimes.shared as shared_module
    from chainsight.engine.core import Engine

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    left = tmp_path / f"chainsight-{int(dead.stdout)}-k1lled"
    running = tmp_path / f"chainsight-{os.getppid()}-running"
    other = tmp_path / f"chainsight-{int(dead.stdout)}-afile"
    for directory in (left, running):
        directory.mkdir()
        (directory / "batch").write_bytes(b"columns")
    other.write_bytes(b"not a directory")
    monkeypatch.setattr(shared_module, "MEMORY", str(tmp_path))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([fix(3), fix(4)]) + b"\n")
    assert replay_module.replay(events, Engine(), workers=1).events == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, other.name, events.name])
