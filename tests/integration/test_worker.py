"""`chainsight worker` against the real Kafka broker and Redis: same results as `replay`.

Each test runs worker subprocesses on its own topics and Redis keys, produces a scenario through
the producer path (`chainsight.runtimes.kafka.publish`), and compares the alerts topic, the
dead-letter topic and the Redis live state with `chainsight.runtimes.replay.replay` on the same
events.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition
from helpers import at, line

from chainsight.config import load_settings
from chainsight.engine.core import Engine
from chainsight.runtimes.kafka import control
from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.partition import Partition, PartitionState
from chainsight.runtimes.kafka.publish import KafkaSink
from chainsight.runtimes.kafka.snapshots import Checkpoint, PartitionReader
from chainsight.runtimes.replay import replay
from chainsight.trace.record import business_events, readings, verify

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
MALFORMED = [
    b'{"type":"gps","device_id":"G01","ts":"2026-11-20T08:10:00Z","lat":95.0,"lon":4.0}',
    b'{"type":"sensor","device_id":"T01","ts":"2026-11-20T08:10:00","temp_c":5}',
    b'{"type":"sensor","device_id":"T01","ts":"2026-11-20T08:10:00Z","temp_c":NaN}',
    b'{"type":"scan","shipment_id":"S01","ts":"2026-11-20T08:10:00Z"}',
    b'{"type":"gps","device_id":"G02","ts":"2036-11-20T08:10:00Z","lat":52.0,"lon":4.0}',
    b'{"type":"teleport","device_id":"G02","ts":"2026-11-20T08:10:00Z"}',
    b"{not json",
]


# --- the scenario -----------------------------------------------------------------------------

def scenario(seed: int = 7, shipments: int = 12, minutes: int = 120) -> list[bytes]:
    """Arrival-ordered events: readings and fixes every minute per shipment, one long
    excursion (S01), a short one that never opens (S02), a sensor that goes silent (S03), one
    with a gap (S04), devices linked only by their order (S05, S06), a delivery, duplicates,
    out-of-order arrivals within the allowed lateness, and malformed lines."""
    rnd = random.Random(seed)
    timed: list[tuple[float, bytes]] = []
    for i in range(1, shipments + 1):
        s, sensor, gps = f"S{i:02d}", f"T{i:02d}", f"G{i:02d}"
        profile = "chilled_food" if i % 4 == 0 else "pharma_2_8"
        timed.append((-60, line(type="order", order_id=f"O{i:02d}", shipment_id=s, ts=at(-60),
                                status="in_transit", product_profile=profile,
                                device_ids=[sensor, gps], event_id=f"{s}-order")))
        linked_only = i in (5, 6)  # device events without shipment_id
        for m in range(minutes):
            temp = 4.0 + rnd.uniform(-0.5, 0.5)
            if i == 1 and 20 <= m < 45:
                temp = 9.5 + rnd.uniform(0, 1)
            if i == 2 and 30 <= m < 40:
                temp = 9.0
            silent = (i == 3 and m >= 50) or (i == 4 and 30 <= m < 55)
            extra = {} if linked_only else {"shipment_id": s}
            if not silent:
                timed.append((m, line(type="sensor", device_id=sensor, ts=at(m),
                                      temp_c=round(temp, 2), event_id=f"{sensor}-{m}",
                                      **extra)))
            timed.append((m + 0.5, line(type="gps", device_id=gps, ts=at(m + 0.5),
                                        lat=52.0 + i / 100 + m / 1000, lon=4.0 + m / 500,
                                        **extra)))
        if i == 7:
            timed.append((90, line(type="scan", shipment_id=s, ts=at(90), site_id="HUB-1",
                                   step="delivered", reader_id="R1")))
    arrival = [(t + rnd.uniform(0, 3) if rnd.random() < 0.1 else t, ev) for t, ev in timed]
    arrival += [(t + rnd.uniform(0.1, 2), ev) for t, ev in rnd.sample(timed, len(timed) // 20)]
    arrival += [(rnd.uniform(0, minutes), bad) for bad in MALFORMED]
    arrival.sort(key=lambda pair: pair[0])
    return [ev for _, ev in arrival]


def expected(tmp_path: Path, lines: list[bytes]) -> dict:
    """What `chainsight replay` gives on these events."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = {n: tmp_path / f"replay-{n}" for n in ("alerts", "dead", "state")}
    replay(events, Engine(), out["alerts"], out["dead"], out["state"])
    engine = Engine()  # the notifications (escalations), which replay does not write
    notifications = engine.process(lines).notifications + engine.flush().notifications
    return {"alerts": [orjson.loads(x) for x in out["alerts"].read_bytes().splitlines()],
            "dead": [orjson.loads(x) for x in out["dead"].read_bytes().splitlines()],
            "state": orjson.loads(out["state"].read_bytes()), "notifications": notifications}


# --- running workers ----------------------------------------------------------------------------

class Deployment:
    """Topics, Redis keys and worker subprocesses of one test."""

    def __init__(self, prefix: str, bootstrap: str, redis_url: str, logs: Path,
                 create_topics: bool = True) -> None:
        """`create_topics=False`: a fresh deployment, whose workers create the topics."""
        self.config = StreamsConfig(bootstrap=bootstrap, redis_url=redis_url,
                                    topic_prefix=prefix, partitions=PARTITIONS)
        self.logs = logs
        self.workers: list[subprocess.Popen] = []
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        cfg = self.config
        if create_topics:
            ensure_topics(bootstrap, cfg.topics(), configs=cfg.topic_configs())

    @cached_property
    def sink(self) -> KafkaSink:
        return KafkaSink(self.config)

    def start_worker(self, *args: str, **env: object) -> subprocess.Popen:
        """A `chainsight worker` process with these options and environment variables."""
        cfg = self.config
        variables = {**os.environ, "CHAINSIGHT_KAFKA_BOOTSTRAP": cfg.bootstrap,
                     "CHAINSIGHT_REDIS_URL": cfg.redis_url,
                     "CHAINSIGHT_TOPIC_PREFIX": cfg.topic_prefix,
                     "CHAINSIGHT_PARTITIONS": str(PARTITIONS), "CHAINSIGHT_TICK_S": "0",
                     "CHAINSIGHT_SNAPSHOT_S": "2",
                     "CHAINSIGHT_WORKER_ID": f"w{len(self.workers)}",
                     **{k: str(v) for k, v in env.items()}}
        log = open(self.logs / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "chainsight.cli", "worker", *args],
                                cwd=REPO,
                                env=variables, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """Graceful stop: the worker snapshots and flushes every output."""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, self.log_text()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.logs.glob("worker-*.log")))

    def assignments(self) -> int:
        """How many workers own partitions, if together they own each exactly once; else 0."""
        owned: list[int] = []
        workers = 0
        for log in sorted(self.logs.glob("worker-*.log")):
            found = re.findall(r"now owning \[([\d, ]*)\]", log.read_text())
            if found and found[-1]:
                workers += 1
                owned += [int(p) for p in found[-1].split(",")]
        return workers if sorted(owned) == list(range(PARTITIONS)) else 0

    def produce(self, lines: list[bytes], end_of_stream: bool = True) -> None:
        """Send events through one long-lived sink (it remembers device links), and wait."""
        self.sink.write(lines)
        if end_of_stream:
            self.sink.end_of_stream()
        self.sink.close()

    def subscribe(self) -> Callable[[], list[dict]]:
        """Collect the change messages from now on; the returned function stops and returns
        them."""
        pubsub = self.redis.pubsub()
        pubsub.subscribe(f"{self.config.redis_prefix}changes")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        received: list[dict] = []
        done = threading.Event()

        def listen() -> None:
            while not done.is_set():
                msg = pubsub.get_message(timeout=0.1)
                if msg is not None and msg["type"] == "message":
                    received.extend(orjson.loads(msg["data"]))

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()

        def stop() -> list[dict]:
            time.sleep(0.5)
            done.set()
            thread.join(timeout=10)
            pubsub.close()
            return received

        return stop

    def progress(self) -> dict[int, dict]:
        raw = self.redis.hgetall(f"{self.config.redis_prefix}partitions")
        return {int(k): orjson.loads(v) for k, v in raw.items()}

    def wait_processed(self, timeout: float = 90) -> None:
        """Until every record now in the events topic is processed."""
        reader = PartitionReader(self.config.bootstrap)
        ends = {p: reader.bounds(self.config.events_topic, p)[1] for p in range(PARTITIONS)}
        reader.close()
        wait_for(lambda: all(self.progress().get(p, {}).get("offset", 0) >= end
                             for p, end in ends.items()), timeout, self.log_text)

    @property
    def checkpoints_topic(self) -> str:
        """Where the workers' snapshots (checkpoints) are."""
        return self.config.checkpoints_topic

    def checkpoints(self) -> dict[int, Checkpoint]:
        """The newest checkpoint of each partition that has one."""
        reader = PartitionReader(self.config.bootstrap)
        try:
            return {p: found for p in range(PARTITIONS)
                    if (found := reader.latest_checkpoint(self.checkpoints_topic, p))
                    is not None}
        finally:
            reader.close()

    def read(self, topic: str) -> list[dict]:
        reader = PartitionReader(self.config.bootstrap)
        try:
            return [{**orjson.loads(r.value), "_partition": p}
                    for p in range(PARTITIONS) for r in reader.read(topic, p)[0]]
        finally:
            reader.close()

    def alerts(self) -> list[dict]:
        return [{k: v for k, v in a.items() if k != "_partition"}
                for a in self.read(self.config.alerts_topic)]

    def shipments(self) -> dict[str, dict]:
        raw = self.redis.hgetall(f"{self.config.redis_prefix}shipments")
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        keys = list(self.redis.scan_iter(f"{self.config.redis_prefix}*"))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()


def wait_for(condition: Callable[[], bool], timeout: float,
             context: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, KafkaException):  # not reachable yet: try again
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s\n{context()}", pytrace=False)
        time.sleep(0.1)


def canonical(alert: dict) -> bytes:
    return orjson.dumps(alert, option=orjson.OPT_SORT_KEYS)


def settled_of(stream: list[dict]) -> list[dict]:
    """A live alert stream minus its withdrawn transitions, without the provisional marks."""
    kept: list[dict | None] = []
    published: dict[tuple, list[int]] = defaultdict(list)
    for record in stream:
        if record["state"] == "retracted":
            w = record["details"]["withdraws"]
            kept[published[(record["alert_id"], w["state"], w["at"])].pop()] = None
        else:
            published[(record["alert_id"], record["state"], record["at"])].append(len(kept))
            kept.append({k: v for k, v in record.items() if k != "provisional"})
    return [record for record in kept if record is not None]


def assert_same_alerts(got: list[dict], want: list[dict]) -> None:
    """The live stream `got`, minus withdrawn transitions, is the settled stream `want` (as
    multisets: corrections may publish a shipment's transitions out of their order)."""
    assert Counter(map(canonical, settled_of(got))) == Counter(map(canonical, want))


# --- the tests ----------------------------------------------------------------------------------

def test_worker_gives_the_same_alerts_state_and_dead_letters_as_replay(deployment, tmp_path):
    lines = scenario()
    want = expected(tmp_path, lines)
    kinds = {(a["kind"], a["state"]) for a in want["alerts"]}
    assert {("temperature_excursion", "open"), ("sensor_silent", "open")} <= kinds
    assert len(want["dead"]) == len(MALFORMED)

    changes = deployment.subscribe()
    worker = deployment.start_worker()
    deployment.produce(lines)
    deployment.wait_processed()
    wait_for(lambda: deployment.shipments() == want["state"]["shipments"], 30,
             deployment.log_text)
    deployment.stop(worker)

    assert_same_alerts(deployment.alerts(), want["alerts"])
    published = changes()  # pub/sub: every transition once, and each shipment's latest state
    assert_same_alerts([c["alert"] for c in published if c["type"] == "alert"], want["alerts"])
    latest = {c["shipment_id"]: c["state"] for c in published if c["type"] == "state"}
    assert latest == want["state"]["shipments"]
    notes = [c["notification"] for c in published if c["type"] == "notification"]
    assert notes and Counter(map(canonical, notes)) == Counter(
        map(canonical, want["notifications"]))
    dead = deployment.read(deployment.config.dead_letter_topic)
    assert sorted((d["payload"], d["reason"]) for d in dead) == sorted(
        (d["payload"], d["reason"]) for d in want["dead"])
    assert all(d["topic"] == deployment.config.events_topic and d["partition"] == d["_partition"]
               for d in dead)
    totals = Counter()
    for info in deployment.progress().values():
        totals.update(info["counters"])
    for name in ("events", "rejected", "duplicates"):
        assert totals[name] == want["state"]["counters"][name]
    prefix = deployment.config.redis_prefix
    history = deployment.redis.lrange(f"{prefix}history:S01", 0, -1)
    assert 0 < len(history) <= 100 and all(b'"S01"' in h for h in history)
    open_ids = {aid for s in want["state"]["shipments"].values() for aid in s["open_alerts"]}
    stored = {k.decode(): orjson.loads(v)
              for k, v in deployment.redis.hgetall(f"{prefix}open_alerts").items()}
    assert set(stored) == open_ids
    newest = {r["alert_id"]: r for r in want["alerts"] + want["notifications"]}
    assert all(stored[aid].pop("provisional") is False for aid in open_ids)  # all settled
    assert all(stored[aid] == newest[aid] for aid in open_ids)  # escalated: the notification
    assert_records_intact(deployment, lines)


def test_two_workers_give_the_same_alerts_as_one(deployment, tmp_path):
    lines = scenario(seed=11)
    want = expected(tmp_path, lines)
    first, second = deployment.start_worker(), deployment.start_worker()
    wait_for(lambda: deployment.assignments() == 2, 60, deployment.log_text)
    deployment.produce(lines)
    deployment.wait_processed()
    wait_for(lambda: deployment.shipments() == want["state"]["shipments"], 30,
             deployment.log_text)
    assert {info["worker"] for info in deployment.progress().values()} == {"w0", "w1"}
    deployment.stop(first)
    deployment.stop(second)
    assert_same_alerts(deployment.alerts(), want["alerts"])


def test_worker_killed_and_restarted_loses_and_duplicates_nothing(deployment, tmp_path):
    lines = scenario(seed=3)
    want = expected(tmp_path, lines)
    third = len(lines) // 3
    worker = deployment.start_worker(CHAINSIGHT_SNAPSHOT_S=1)
    deployment.produce(lines[:third], end_of_stream=False)
    deployment.wait_processed()
    wait_for(lambda: len(deployment.checkpoints()) == PARTITIONS, 30, deployment.log_text)

    def send_second_third() -> None:  # over ~2 s; the worker dies in the middle of it
        for i in range(third, 2 * third, 50):
            deployment.produce(lines[i:min(i + 50, 2 * third)], end_of_stream=False)
            time.sleep(0.03)

    sender = threading.Thread(target=send_second_third)
    sender.start()
    done = sum(p["offset"] for p in deployment.progress().values())
    wait_for(lambda: sum(p["offset"] for p in deployment.progress().values()) > done + third // 2,
             60, deployment.log_text)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    sender.join()
    killed_at = deployment.checkpoints()

    restarted = deployment.start_worker()
    deployment.produce(lines[2 * third:])
    deployment.wait_processed()
    deployment.stop(restarted)
    log = (tmp_path / "worker-1.log").read_text()
    assert "snapshot of" in log, log
    # killed past a snapshot: the restarted worker processed records again
    assert any(c.offset < deployment.progress()[p]["offset"] for p, c in killed_at.items())
    assert_same_alerts(deployment.alerts(), want["alerts"])
    assert deployment.shipments() == want["state"]["shipments"]
    assert_records_intact(deployment, lines)
    dead = deployment.read(deployment.config.dead_letter_topic)
    assert Counter(d["offset"] for d in dead).most_common(1)[0][1] == 1  # none written twice
    assert sorted(d["payload"] for d in dead) == sorted(d["payload"] for d in want["dead"])


def recorded_events(entries: list[dict]) -> int:
    return len(readings(entries).ts) + len(business_events(entries))


def assert_records_intact(deployment: Deployment, lines: list[bytes]) -> None:
    """Each shipment's record in Redis verifies against its head, and holds every event of
    the shipment once (as many as an engine given all the lines at once records)."""
    engine = Engine(record=True)
    out = engine.process(lines).extend(engine.flush())
    want = Counter()
    for entry in out.record:
        want[entry.shipment_id] += recorded_events([orjson.loads(entry.line)])
    prefix = deployment.config.redis_prefix
    heads = {k.decode(): orjson.loads(v)
             for k, v in deployment.redis.hgetall(f"{prefix}record_heads").items()}
    assert set(heads) == set(want)
    for shipment, (length, head) in heads.items():
        entries = [orjson.loads(e) for e in deployment.redis.lrange(f"{prefix}record:{shipment}",
                                                                    0, -1)]
        assert verify(entries, length, head)["intact"], shipment
        assert recorded_events(entries) == want[shipment], shipment
    topic = deployment.read(deployment.config.records_topic)
    assert {e["shipment_id"] for e in topic} == set(want)


def test_malformed_messages_reach_the_dead_letter_topic(deployment):
    worker = deployment.start_worker()
    bad = [b"", b"   ", b"\xff\xfe{", b'{"type":"gps"}', b"[1, 2]", b"x" * 70_000]
    producer = deployment.sink.producer
    for value in bad:
        producer.send(deployment.config.events_topic, b"k", value)
    assert producer.flush(30) == 0
    wait_for(lambda: len(deployment.read(deployment.config.dead_letter_topic)) == len(bad), 60,
             deployment.log_text)
    deployment.stop(worker)
    dead = deployment.read(deployment.config.dead_letter_topic)
    assert len(dead) == len(bad)
    assert sorted(d["offset"] for d in dead) == list(range(len(bad)))
    for d in dead:
        assert d["reason"] and "\n" not in d["reason"]
        assert d["key"] == "k" and d["topic"] == deployment.config.events_topic
        original = bad[d["offset"]]
        assert d["payload"] == original.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    wait_for(lambda: client.ping(), 15)
    client.close()
    return proc


def test_redis_restart_is_survived(topic_prefix, kafka_bootstrap, tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path)
    dep = Deployment(topic_prefix, kafka_bootstrap, f"redis://127.0.0.1:{port}/0", tmp_path)
    try:
        lines = scenario(seed=5, shipments=6, minutes=60)
        want = expected(tmp_path, lines)
        half = len(lines) // 2
        dep.start_worker()
        dep.produce(lines[:half], end_of_stream=False)
        dep.wait_processed()
        server.kill()  # SIGKILL, no persistence: every key is gone
        server.wait(timeout=30)
        dep.produce(lines[half:])  # processed while Redis is down
        time.sleep(1)
        server = start_redis(port, tmp_path)
        wait_for(lambda: dep.shipments() == want["state"]["shipments"], 60, dep.log_text)
        assert dep.workers[0].poll() is None
        dep.wait_processed()
        dep.stop(dep.workers[0])
    finally:
        dep.close()
        server.kill()
        server.wait(timeout=30)


def test_scenario_is_what_the_tests_claim(tmp_path):
    """The scenario exercises what the other tests rely on (no broker needed)."""
    want = expected(tmp_path, scenario())
    shipments = want["state"]["shipments"]
    assert len(shipments) == 12 and shipments["S07"]["status"] == "delivered"
    assert want["state"]["counters"]["duplicates"] > 0
    assert json.dumps(want["alerts"])  # serialisable as sent to Kafka


def test_idle_partitions_get_logged_ticks_that_replay_the_same(deployment, tmp_path):
    """Live mode: a silent sensor alerts on wall-clock ticks written into the events topic, and
    reprocessing the topic (ticks included) gives exactly the alerts the worker wrote."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text(
        json.dumps({"sensor_silent_min": 0.05, "allowed_lateness_min": 0}))
    worker = deployment.start_worker(CHAINSIGHT_CONFIG_DIR=config, CHAINSIGHT_TICK_S=0.3)
    now = int(time.time() * 1000)
    lines = [line(type="order", order_id="O1", shipment_id="S1", ts=now - 60_000,
                  status="in_transit", product_profile="pharma_2_8", device_ids=["T1"])]
    lines += [line(type="sensor", device_id="T1", shipment_id="S1", ts=now - 5000 + 1000 * i,
                   temp_c=5.0) for i in range(5)]
    deployment.produce(lines, end_of_stream=False)
    wait_for(lambda: any(a["kind"] == "sensor_silent" for a in deployment.alerts()), 30,
             deployment.log_text)
    deployment.stop(worker)

    cfg = deployment.config
    consumer = Consumer({"bootstrap.servers": cfg.bootstrap, "group.id": "test-reprocess",
                         "enable.auto.commit": False})
    reader = PartitionReader(cfg.bootstrap)
    ends = [reader.bounds(cfg.events_topic, p)[1] for p in range(PARTITIONS)]
    reader.close()
    reprocessed: list[dict] = []
    ticks = 0
    for p, end in enumerate(ends):
        if not end:
            continue
        consumer.assign([TopicPartition(cfg.events_topic, p, 0)])
        records = []
        while len(records) < end:
            records += consumer.consume(end - len(records), timeout=5)
        ticks += sum(control.kind(r.headers() or []) == control.TICK for r in records)
        engine = Engine(load_settings(sensor_silent_min=0.05, allowed_lateness_min=0),
                        live=True)
        part = Partition(cfg.events_topic, p, PartitionState(engine), 0, history=False)
        reprocessed += [record for record, _, _ in part.process(records).alerts]
    consumer.close()
    assert ticks > 0
    assert Counter(map(canonical, deployment.alerts())) == Counter(map(canonical, reprocessed))
