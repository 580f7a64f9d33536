"""ETAs on the distributed runtime: each partition learns its own model, which survives a worker
kill -9 in its snapshot, and `replay` configured with as many ETA shards as there are
partitions gives the same `eta_late` transitions."""

from __future__ import annotations

import signal

import orjson
import pytest
from test_worker import PARTITIONS, assert_same_alerts, wait_for

from chainsight.api.kafka import KafkaBackend
from chainsight.config import load_profiles, load_settings
from chainsight.engine.core import Engine
from chainsight.geofence import FenceSet
from chainsight.runtimes.replay import replay
from chainsight.sim import simulate

MARGIN = {"CHAINSIGHT_ETA_LATE_MARGIN_MIN": 0}  # eta_late as soon as an ETA passes the promise


def test_a_killed_worker_resumes_its_eta_models_and_gives_replays_eta_late(deployment,
                                                                          tmp_path):
    sim = simulate("smoke", shipments=40)
    fences = tmp_path / "fences.geojson"
    fences.write_bytes(orjson.dumps(sim.fences()))
    events, alerts, state = (tmp_path / n for n in ("events.jsonl", "alerts.jsonl",
                                                    "state.json"))
    sim.write_jsonl(events)
    settings = load_settings(eta_shards=PARTITIONS, eta_late_margin_min=0)
    engine = Engine(settings, fences=FenceSet.from_file(fences))
    replay(events, engine, alerts, state_out=state)
    want = [orjson.loads(x) for x in alerts.read_bytes().splitlines()]
    late = [a for a in want if a["kind"] == "eta_late"]
    assert {a["state"] for a in late} == {"open", "resolved"}
    assert engine.eta_model.deliveries > 0  # learned, per partition

    lines = events.read_bytes().splitlines()
    half = len(lines) // 2
    worker = deployment.start_worker("--fences", str(fences), CHAINSIGHT_SNAPSHOT_S=1,
                                     **MARGIN)
    deployment.produce(lines[:half], end_of_stream=False)
    deployment.wait_processed(timeout=180)
    wait_for(lambda: len(deployment.checkpoints()) == PARTITIONS, 30, deployment.log_text)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    restarted = deployment.start_worker("--fences", str(fences), **MARGIN)
    deployment.produce(lines[half:])
    deployment.wait_processed(timeout=180)
    deployment.stop(restarted)
    assert "snapshot of" in (tmp_path / "worker-1.log").read_text()
    assert_same_alerts(deployment.alerts(), want)
    etas = [s["eta"] for s in deployment.shipments().values()]
    assert all(e is None or isinstance(e, str) for e in etas)
    # /metrics on Kafka: the partitions' accuracy together is replay's (same trips, same ETAs)
    backend = KafkaBackend(deployment.config, settings, load_profiles())
    try:
        metrics = backend.metrics()
    finally:
        backend.close()
    accuracy = engine.snapshot()["eta_accuracy"]
    assert accuracy["eta_accuracy.samples"] > 0
    assert {k: metrics[k] for k in accuracy} == pytest.approx(accuracy, abs=0.002)
    assert metrics["eta_deliveries"] > 0 and metrics["eta_predictions"] > 0  # summed
