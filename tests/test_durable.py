"""Durable embedded state: what `serve` answered 2xx to survives a kill -9 and a restart."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import msgspec
import orjson
import pytest
from api_server import free_port
from helpers import fix, ms, order, reading

from chainsight.api.auth import TokenStore
from chainsight.cli import main
from chainsight.config import load_settings
from chainsight.contract.commands import Acknowledge
from chainsight.engine.core import Engine
from chainsight.runtimes.embedded import EmbeddedRuntime
from chainsight.runtimes.kafka.snapshots import MAGIC, SnapshotError
from chainsight.runtimes.store import Store
from chainsight.trace.chain import first_broken
from chainsight.trace.record import verify

ADMIN = "admin-secret-for-tests"
NDJSON = {"content-type": "application/x-ndjson"}


def excursion(shipment: str = "S1", temp: str = "T1", gps: str = "G1") -> list[bytes]:
    """An order, then 20 minutes above 8 °C (an excursion opens at 15)."""
    lines = [order(shipment, customer_id="C1", devices=(temp, gps))]
    for minute in range(21):
        lines += [reading(minute, 5 if minute == 0 else 11, device=temp),
                  fix(minute, device=gps)]
    return lines


def engine() -> Engine:
    return Engine(load_settings(allowed_lateness_min=0.05, record_block_min=1), live=True)


def state_of(e: Engine) -> tuple:
    return e.counters, e.alerts(), e.metrics()


# --- the store, in process --------------------------------------------------------------

def durable_runtime(directory: Path) -> tuple[EmbeddedRuntime, Store]:
    store = Store(directory)
    e = engine()
    store.recover(e)
    return EmbeddedRuntime(e, clock=lambda: ms(30), calls=store), store


def test_recovery_replays_the_log_after_the_snapshot(tmp_path):
    runtime, store = durable_runtime(tmp_path)
    lines = excursion()
    runtime.process(lines[:20])
    with runtime.lock:
        store.snapshot(runtime.engine)  # a snapshot in the middle: state = snapshot + log
    runtime.process(lines[20:])
    runtime.process([b"not json", b"\xff\xfe"])  # rejected, not UTF-8 either: logged exactly
    (alert,) = runtime.engine.alerts(kind="temperature_excursion")
    runtime.apply(Acknowledge(alert["alert_id"], "qa", "on it", recorded_at=ms(31)))
    with runtime.lock:
        runtime.calls.advance(runtime.engine, ms(40))
    expected = state_of(runtime.engine)
    assert expected[0]["events"] == len(lines) and expected[0]["rejected"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "log-000002.jsonl",
                                                          "record.jsonl", "snapshot-000002.bin"]
    record = store.records.entries("S1")
    assert verify(record, *runtime.engine.record_head("S1"))["intact"]
    # no close: as after kill -9, here in the middle of writing the next snapshot
    (tmp_path / "snapshot-000003.tmp").write_bytes(b"\x78")
    again = engine()
    restarted = Store(tmp_path)
    assert restarted.recover(again) == 4  # two batches, the command, the tick
    assert state_of(again) == expected
    assert restarted.records.entries("S1") == record  # made again by the replay, kept once
    history = runtime.calls.history.of("S1")  # the shipment's recent events as sent
    assert len(history) == len(lines) and restarted.history.of("S1") == history
    assert again.record_head("S1") == runtime.engine.record_head("S1")
    (record,) = again.alerts(kind="temperature_excursion")
    assert record["state"] == "acknowledged" and record["details"]["user"] == "qa"
    assert not list(tmp_path.glob("*.tmp"))
    assert again.process(lines[:5], now=ms(41)).dead_letters == []
    assert again.counters["duplicates"] == 5  # the dedup state came back too


def test_a_record_cut_short_at_the_end_is_skipped_with_a_warning(tmp_path, caplog):
    runtime, store = durable_runtime(tmp_path)
    runtime.process(excursion())
    expected = state_of(runtime.engine)
    log_file = tmp_path / f"log-{store.number:06d}.jsonl"
    with open(log_file, "ab") as f:  # a kill in the middle of a write
        f.write(b'{"lines":["{\\"type\\":\\"sensor\\",\\"dev')
    again = engine()
    with caplog.at_level(logging.WARNING):
        assert Store(tmp_path).recover(again) == 1
    assert "cut short" in caplog.text and log_file.name in caplog.text
    assert state_of(again) == expected
    assert not log_file.exists()  # recovery starts a new snapshot and log


def test_a_damaged_record_before_the_end_is_an_error(tmp_path):
    runtime, store = durable_runtime(tmp_path)
    runtime.process(excursion()[:3])
    log_file = tmp_path / f"log-{store.number:06d}.jsonl"
    good = log_file.read_bytes()
    log_file.write_bytes(b'{"lines": [1, 2\n' + good)
    with pytest.raises(SnapshotError, match=r"line 1 is damaged"):
        Store(tmp_path).recover(engine())


def test_serve_refuses_a_snapshot_of_an_unknown_version(tmp_path, capsys):
    state_dir = tmp_path / "engine"
    state_dir.mkdir()
    blob = msgspec.msgpack.encode({"format": MAGIC, "version": 99, "state": {}})
    (state_dir / "snapshot-000003.bin").write_bytes(zlib.compress(blob))
    assert main(["serve", "--data-dir", str(tmp_path), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "version 99" in err


# --- chainsight serve, killed -----------------------------------------------------------

def serve(data: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "CHAINSIGHT_ADMIN_TOKEN": ADMIN}
    proc = subprocess.Popen([sys.executable, "-m", "chainsight.cli", "serve", "--port",
                             str(port), "--data-dir", str(data), "--allowed-lateness", "0.05"],
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the server did not start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def events_counted(client: httpx.Client) -> dict[str, float]:
    metrics = client.get("/metrics").text.splitlines()
    return {name: float(value) for name, value in (m.split(" ") for m in metrics
                                                   if m.startswith("chainsight_") and " " in m)}


def test_what_serve_answered_survives_kill_9(tmp_path):
    port = free_port()
    quality = TokenStore(tmp_path).create("quality", "qa-user")
    proc = serve(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"},
                             timeout=30)
        lines = excursion()
        answer = admin.post("/v1/events", content=b"\n".join(lines), headers=NDJSON)
        assert answer.json() == {"accepted": len(lines), "duplicates": 0, "rejected": []}
        (alert,) = admin.get("/v1/alerts", params={"kind": "temperature_excursion"}).json()
        aid = alert["alert_id"]
        acked = httpx.post(f"{url}/v1/alerts/{aid}/acknowledge", json={"comment": "on it"},
                           headers={"Authorization": f"Bearer {quality}"})
        assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"

        answered, batch = [len(lines)], 50  # events in 200 answers
        stop = threading.Event()

        def post_batches() -> None:
            n = 0
            while not stop.is_set():
                body = [fix(100 + (n + i) / 1000, device="G9") for i in range(batch)]
                try:
                    r = admin.post("/v1/events", content=b"\n".join(body), headers=NDJSON)
                except httpx.TransportError:
                    return
                assert r.status_code == 200 and r.json()["accepted"] == batch
                answered.append(batch)
                n += batch

        poster = threading.Thread(target=post_batches)
        poster.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)  # mid-ingest
        proc.wait(10)
        stop.set()
        poster.join(30)
        assert len(answered) > 5, "the poster did not get going before the kill"

        proc = serve(tmp_path, port)
        counted = events_counted(admin)
        # every answered event is there once; the batch in flight at the kill may be too
        assert counted["chainsight_events_total"] in (sum(answered), sum(answered) + batch)
        assert counted["chainsight_duplicates_total"] == 0
        (alert,) = admin.get("/v1/alerts", params={"kind": "temperature_excursion"}).json()
        assert alert["alert_id"] == aid and alert["state"] == "acknowledged"
        assert alert["details"]["user"] == "qa-user" and alert["details"]["comment"] == "on it"
        history = admin.get("/v1/shipments/S1").json()["history"]
        assert [orjson.dumps(e) for e in history] == [orjson.dumps(orjson.loads(x))
                                                     for x in lines]  # as sent, newest last
        again = admin.post("/v1/events", content=b"\n".join(lines), headers=NDJSON).json()
        assert again == {"accepted": 0, "duplicates": len(lines), "rejected": []}
    finally:
        proc.kill()
        proc.wait(10)


def test_the_audit_trail_is_written_out_once_and_verifies(tmp_path):
    """Every transition and user action goes to audit.jsonl, which verifies; a restart
    replays the log without writing an entry twice; a modified entry is named."""
    settings = load_settings(allowed_lateness_min=1)
    engine = Engine(settings, live=True)
    store = Store(tmp_path)
    store.recover(engine)
    fleet = [order(), *(fix(-1, device=d) for d in ("G1", "G2"))]
    store.process(engine, fleet, ms(-1))
    for m in range(20):
        store.process(engine, [reading(m, 9.0), fix(m, device="G1"), fix(m, device="G2")],
                      ms(m))
    aid = engine.alerts(kind="temperature_excursion")[0]["alert_id"]
    store.apply(engine, Acknowledge(aid, "alice", "calling the driver", recorded_at=ms(20)))
    store.flush(engine)  # everything settles
    store.close()
    written = store.audit.entries()
    assert first_broken(written) is None
    assert [(e["transition"], e["who"]) for e in written if e["alert_id"] == aid][-1] == (
        "acknowledged", "alice")
    again = Engine(settings, live=True)
    Store(tmp_path).recover(again)
    assert (tmp_path / "audit.jsonl").read_bytes().count(b"\n") == len(written)
    tampered = [dict(e) for e in written]
    tampered[1]["who"] = "mallory"
    assert first_broken(tampered) == 1
