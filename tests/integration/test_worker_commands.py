"""Users' commands, the audit trail and geofences through the Kafka worker (real broker, Redis).

Commands travel in band on the events topic (keyed by shipment), so they reach the worker that
owns the alert and are covered by its snapshots; audit entries go to their own topic and verify;
fences given at start and replaced while running give what the embedded engine gives.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict

import orjson
from helpers import at
from test_worker import (
    PARTITIONS,
    Deployment,
    assert_same_alerts,
    expected,
    scenario,
    settled_of,
    wait_for,
)

from chainsight.alerts.book import NOTIFICATIONS
from chainsight.config import load_settings
from chainsight.contract.commands import Acknowledge, ReplaceFences, Resolve
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka.publish import publish_fences, send_command
from chainsight.runtimes.kafka.snapshots import PartitionReader
from chainsight.runtimes.replay import replay
from chainsight.sim import simulate
from chainsight.trace.chain import first_broken

RECORDED_AT = 1_795_600_000_000  # wall clock the API stamps on a command


def audit_trails(deployment: Deployment) -> dict[int, list[dict]]:
    """The audit topic, per partition: entries in chain order, each once (the topic is keyed by
    position, so an entry written again after a restart replaces itself)."""
    by_key: dict[tuple[int, int], dict] = {}
    for entry in deployment.read(deployment.config.audit_topic):
        p = entry.pop("_partition")
        by_key[(p, entry["seq"])] = entry
    trails: dict[int, list[dict]] = defaultdict(list)
    for (p, _), entry in sorted(by_key.items()):
        trails[p].append(entry)
    return trails


def records_of(deployment: Deployment, alert_id: str) -> list[dict]:
    """The alert's transitions in the live stream, minus any withdrawn."""
    return [a for a in settled_of(deployment.alerts()) if a["alert_id"] == alert_id]


def test_acknowledge_and_resolve_in_band_survive_a_kill_and_the_audit_verifies(deployment,
                                                                              tmp_path):
    lines = scenario(seed=7)
    want = expected(tmp_path, lines)
    worker = deployment.start_worker(CHAINSIGHT_SNAPSHOT_S=1)
    deployment.produce(lines)
    deployment.wait_processed()
    wait_for(lambda: deployment.shipments() == want["state"]["shipments"], 30,
             deployment.log_text)
    silent = next(a for a in want["alerts"]
                  if a["kind"] == "sensor_silent" and a["shipment_id"] == "S03")
    aid = silent["alert_id"]

    sink = deployment.sink
    send_command(sink, Acknowledge(aid, "alice", "calling the driver",
                                   recorded_at=RECORDED_AT), "S03")
    send_command(sink, Acknowledge("0000000000000000", "alice"), "S03")
    sink.end_of_stream()  # the recording is over: what was published settles
    sink.close()
    wait_for(lambda: any(r["state"] == "acknowledged" for r in records_of(deployment, aid)), 60,
             deployment.log_text)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    restarted = deployment.start_worker()
    sink = deployment.sink
    send_command(sink, Resolve(aid, "bob", "sensor replaced at the hub",
                               recorded_at=RECORDED_AT + 60_000), "S03")
    sink.end_of_stream()
    sink.close()
    wait_for(lambda: any(r["state"] == "resolved" for r in records_of(deployment, aid)), 60,
             deployment.log_text)
    deployment.wait_processed()
    deployment.stop(restarted)

    mine = records_of(deployment, aid)
    assert [r["details"]["transition"] for r in mine] == [
        "opened", "acknowledged", "resolved_manually"], mine  # each once, across the kill
    ack, resolved = mine[1], mine[2]
    assert ack["details"]["user"] == "alice" and ack["details"]["comment"] == "calling the driver"
    assert resolved["details"]["user"] == "bob" and resolved["state"] == "resolved"
    stored = deployment.redis.hgetall(f"{deployment.config.redis_prefix}open_alerts")
    assert aid.encode() not in stored
    dead = deployment.read(deployment.config.dead_letter_topic)
    refused = [d for d in dead if "control record refused" in d["reason"]]
    assert len(refused) == 1 and "unknown alert id" in refused[0]["reason"]

    trails = audit_trails(deployment)
    assert all(first_broken(trail) is None for trail in trails.values())
    entries = [e for trail in trails.values() for e in trail
               if e["alert_id"] == aid and e["transition"] not in NOTIFICATIONS]
    assert [(e["transition"], e["who"]) for e in entries] == [
        ("opened", "engine"), ("acknowledged", "alice"), ("resolved_manually", "bob")]
    assert entries[1]["comment"] == "calling the driver"
    assert entries[1]["recorded_at"] == "2026-11-25T09:46:40Z"  # RECORDED_AT
    p, trail = next((p, t) for p, t in trails.items() if any(e["alert_id"] == aid for e in t))
    i = next(i for i, e in enumerate(trail) if e["alert_id"] == aid and e["who"] == "alice")
    tampered = [dict(e) for e in trail]
    tampered[i]["who"] = "mallory"
    assert first_broken(tampered) == i
    assert first_broken(trail[:i] + trail[i + 1:]) == i  # an entry removed


def polygon(fence_id: str, west: float, east: float) -> dict:
    ring = [[west, 51.9], [east, 51.9], [east, 52.5], [west, 52.5], [west, 51.9]]
    return {"type": "Feature", "properties": {"fence_id": fence_id, "kind": "hub"},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def test_fences_at_start_and_replaced_mid_stream_reach_every_partition(deployment, tmp_path):
    # The trucks of `scenario` drive east from lon 4.0 (minute 0) to 4.24 (minute 120): they
    # leave HUB near minute 25 and enter FAR near minute 100, long after the replacement.
    first = {"type": "FeatureCollection", "features": [polygon("HUB", 3.95, 4.05)]}
    second = {"type": "FeatureCollection",
              "features": [polygon("HUB", 3.95, 4.05), polygon("FAR", 4.2, 4.3)]}
    path = tmp_path / "fences.geojson"
    path.write_bytes(orjson.dumps(first))
    lines = scenario(seed=9)
    cut = len(lines) // 2
    assert b'"ts":"' + at(70).encode() not in b"".join(lines[:cut])  # the cut is before 70

    engine = Engine(fences=FenceSet.from_geojson(first))
    want = engine.process(lines[:cut]).alerts
    want += engine.apply(ReplaceFences(second, 1)).alerts
    want += engine.process(lines[cut:]).alerts + engine.flush().alerts

    worker = deployment.start_worker("--fences", str(path))
    deployment.produce(lines[:cut], end_of_stream=False)
    publish_fences(deployment.config, second, 1)
    deployment.produce(lines[cut:])
    deployment.wait_processed()
    deployment.stop(worker)

    got = deployment.read(deployment.config.alerts_topic)
    far = [a for a in got if a.get("fence_id") == "FAR" and a["kind"] == "geofence_enter"
           and a["state"] == "open"]
    assert {a["shipment_id"] for a in far} == {f"S{i:02d}" for i in range(1, 13)}
    assert {a["_partition"] for a in far} == set(range(PARTITIONS))
    assert_same_alerts([{k: v for k, v in a.items() if k != "_partition"} for a in got], want)


def test_a_recording_with_fences_gives_replays_transitions(deployment, tmp_path):
    sim = simulate("smoke", shipments=40)
    fences = tmp_path / "fences.geojson"
    fences.write_bytes(orjson.dumps(sim.fences()))
    events = tmp_path / "events.jsonl"
    sim.write_jsonl(events)
    alerts = tmp_path / "alerts.jsonl"
    # replay configured like the deployment: one ETA model per partition, as the workers learn
    replay(events, Engine(load_settings(eta_shards=PARTITIONS),
                          fences=FenceSet.from_file(fences)), alerts)
    want = [orjson.loads(x) for x in alerts.read_bytes().splitlines()]
    assert {a["kind"] for a in want} >= {"geofence_enter", "geofence_exit"}

    worker = deployment.start_worker("--fences", str(fences))
    deployment.produce(events.read_bytes().splitlines())
    deployment.wait_processed(timeout=180)
    deployment.stop(worker)
    assert_same_alerts(deployment.alerts(), want)


def test_a_recording_gives_replays_transitions_with_the_default_ticks(deployment, tmp_path):
    """Idle ticks (every 5 s by default) move a partition's event time on by the wall time
    since its last arrival, never to the calendar: a recording days old, idle after it, gives
    replay's transitions (live: provisional, confirmed at its end). Its end-of-stream marker
    stops its time: no ticks are written for it after that."""
    lines = scenario(seed=13)
    want = expected(tmp_path, lines)
    worker = deployment.start_worker(CHAINSIGHT_TICK_S="5")
    deployment.produce(lines, end_of_stream=False)
    deployment.wait_processed()
    time.sleep(12)  # idle: two ticks or more per partition
    deployment.wait_processed()
    assert ticks(deployment) > 0
    assert_same_alerts(deployment.alerts(), want["alerts"])
    deployment.produce([])  # the end-of-stream marker
    deployment.wait_processed()
    written = ticks(deployment)
    time.sleep(7)
    assert ticks(deployment) == written
    deployment.stop(worker)
    assert_same_alerts(deployment.alerts(), want["alerts"])


def ticks(deployment: Deployment) -> int:
    """Tick records in the events topic (their value is `{"now": ms}`)."""
    reader = PartitionReader(deployment.config.bootstrap)
    try:
        return sum(r.value.startswith(b'{"now"') for p in range(PARTITIONS)
                   for r in reader.read(deployment.config.events_topic, p)[0] if r.value)
    finally:
        reader.close()
