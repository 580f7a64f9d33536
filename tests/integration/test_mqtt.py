"""MQTT ingest against the real local Mosquitto (and Kafka for the bridge): devices' messages give
what `replay` gives on the same events; a bridge killed with SIGKILL loses and duplicates
nothing; malformed payloads are dead-lettered with their topic and the stream goes on.

Each test uses its own topic root and client ids, and removes its persistent sessions.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from getpass import getuser

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_worker import (
    REPO,
    assert_same_alerts,
    canonical,
    expected,
    free_port,
    scenario,
    wait_for,
)

from chainsight.api.app import create_app
from chainsight.api.auth import TokenStore
from chainsight.api.mqtt import mqtt_ingest
from chainsight.contract.times import now_ms
from chainsight.engine.core import Engine
from chainsight.ingest.mqtt import (
    Broker,
    connect,
    device_topic,
    forget_session,
    system_topic,
)
from chainsight.runtimes.embedded import EmbeddedRuntime
from chainsight.sim.mqtt import MqttSink

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1884"
# MQTT-only refusals: never reach the engine, so replay has no counterpart
REFUSED = [("devices/T01/events", b'{"type":"sensor","device_id":"T02","ts":0,"temp_c":5}',
            "device_id T02 does not match the topic's device T01"),
           ("devices/T01/events", b"", "empty message"),
           ("devices/T01/events", b'[{"type":"sensor"', "malformed JSON")]


@pytest.fixture(scope="session")
def broker() -> Broker:
    """A reachable MQTT broker (CHAINSIGHT_MQTT_URL)."""
    url = os.environ.get("CHAINSIGHT_MQTT_URL", DEFAULT_MQTT_URL)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    address = Broker.parse(url)
    try:
        connect(client, address, timeout_s=5)
    except ValueError as exc:
        pytest.fail(f"{exc}. Start the local services with `scripts/services.sh start`.",
                    pytrace=False)
    client.disconnect()
    client.loop_stop()
    return address


@pytest.fixture
def root() -> str:
    """A topic root of this test's own."""
    return f"cs-it/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sessions(broker: Broker) -> Iterator[list[str]]:
    """Client ids whose persistent sessions are removed from the broker after the test."""
    ids: list[str] = []
    yield ids
    for client_id in ids:
        forget_session(broker, client_id)


def open_session(broker: Broker, client_id: str, root: str) -> None:
    """Create the persistent session a bridge will use, subscribed: the broker keeps every
    message from now on, even before the bridge first connects."""
    client = broker.client(client_id)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    connect(client, broker, properties, clean_start=False)
    subscribe_all(client, root)
    client.disconnect()
    client.loop_stop()


def subscribe_all(client: mqtt.Client, root: str) -> None:
    """Subscribe to every device's and system's topic under `root`, and wait for the SUBACK."""
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.subscribe([(device_topic("+", root), 1), (system_topic("+", root), 1)])
    assert subscribed.wait(10)


def publish_refused(sink: MqttSink, root: str) -> None:
    for topic, payload, _ in REFUSED:
        sink.publish(f"{root}/{topic}", payload)


def refused(dead: dict, root: str) -> bool:
    """Whether a dead letter is one of REFUSED's."""
    return any(dead["topic"] == f"{root}/{topic}" and dead["payload"] == payload.decode()
               for topic, payload, _ in REFUSED)


def dead_letters(path) -> list[dict]:
    """The dead-letter file's whole lines so far (none before the file's first write)."""
    data = path.read_bytes() if path.exists() else b""
    return [orjson.loads(x) for x in data[:data.rfind(b"\n") + 1].splitlines()]


def assert_refused_dead_lettered(dead: list[dict], root: str) -> None:
    for topic, payload, reason in REFUSED:
        assert any(d["topic"] == f"{root}/{topic}" and d["reason"].startswith(reason)
                   and d["payload"] == payload.decode() for d in dead), (topic, reason, dead)


# --- the embedded runtime (`serve --mqtt`) -------------------------------------------------------

def test_mqtt_into_the_embedded_engine_gives_replays_alerts_state_and_dead_letters(
        broker, root, sessions, tmp_path):
    lines = scenario(seed=5)
    want = expected(tmp_path, lines)
    now = now_ms()
    runtime = EmbeddedRuntime(Engine(live=True), clock=lambda: now).start()
    alerts: list[dict] = []
    runtime.subscribe(lambda out: alerts.extend(out.alerts))
    app = create_app(runtime, TokenStore(tmp_path / "api"))
    sessions.append(client_id := f"serve-{uuid.uuid4().hex[:8]}")
    ingest = mqtt_ingest(app, broker, client_id, tmp_path, root).start()
    sink = MqttSink(broker, client_id=f"{client_id}-pub", root=root)
    half = len(lines) // 2
    sink.write(lines[:half])
    publish_refused(sink, root)  # dead-lettered, and the stream goes on
    sink.write(lines[half:])
    sink.close()
    wait_for(lambda: ingest.stats.messages == sink.messages, 60)
    ingest.stop()
    runtime.stop(flush=True)

    assert ingest.failure is None
    assert_same_alerts(alerts, want["alerts"])
    assert runtime.engine.snapshot() == want["state"]
    dead = dead_letters(tmp_path / "mqtt-dead.jsonl")
    engine_dead = [d for d in dead if not refused(d, root)]
    assert sorted((d["payload"], d["reason"]) for d in engine_dead) == sorted(
        (d["payload"], d["reason"]) for d in want["dead"])
    assert all(d["topic"].startswith(f"{root}/") for d in dead)
    assert_refused_dead_lettered(dead, root)
    history = app.state.context.backend.history("S01")  # as POST /v1/events keeps it
    assert history and all(e.get("shipment_id", "S01") == "S01" for e in history)


class Serve:
    """`chainsight serve --mqtt` processes on one data directory and persistent session."""

    def __init__(self, broker: Broker, root: str, client_id: str, data_dir) -> None:
        self.args = ["--data-dir", str(data_dir), "--mqtt", str(broker), "--mqtt-topic-root",
                     root, "--mqtt-client-id", client_id]
        self.log = data_dir / "serve.log"
        self.url = ""

    def start(self) -> subprocess.Popen:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "CHAINSIGHT_ADMIN_TOKEN": "admin-token"}
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "chainsight.cli", "serve", "--port", str(port),
                 *self.args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.healthy, 60, self.log.read_text)
        return proc

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz").status_code == 200
        except httpx.TransportError:  # not listening yet
            return False

    def shipment(self, shipment_id: str) -> dict | None:
        answer = httpx.get(f"{self.url}/v1/shipments/{shipment_id}",
                           headers={"Authorization": "Bearer admin-token"})
        return answer.json() if answer.status_code == 200 else None

    def stop(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGTERM)  # uvicorn re-raises it once shut down
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), self.log.read_text()


def test_serve_takes_a_devices_reading_over_mqtt(broker, root, sessions, tmp_path):
    sessions.append(client_id := f"serve-{uuid.uuid4().hex[:8]}")
    serve = Serve(broker, root, client_id, tmp_path)
    proc = serve.start()
    try:
        sink = MqttSink(broker, client_id=f"{client_id}-pub", root=root)
        reading = {"type": "sensor", "device_id": "REEFER-17", "ts": "2026-11-29T08:00:00Z",
                   "temp_c": 4.2, "shipment_id": "SH-1042"}
        sink.write([orjson.dumps(reading)])
        sink.publish(device_topic("REEFER-17", root), b"{not json")
        sink.close()
        wait_for(lambda: (serve.shipment("SH-1042") or {}).get("last_temp_c") == 4.2, 30,
                 serve.log.read_text)
        wait_for(lambda: dead_letters(tmp_path / "mqtt-dead.jsonl"), 10)  # created, then written
        [dead] = dead_letters(tmp_path / "mqtt-dead.jsonl")
        assert dead["topic"] == device_topic("REEFER-17", root)
        assert dead["reason"].startswith("malformed JSON")
    finally:
        serve.stop(proc)


def test_serve_killed_mid_stream_loses_nothing(broker, root, sessions, tmp_path):
    lines = scenario(seed=9, shipments=8, minutes=60)
    want = expected(tmp_path, lines)
    sessions.append(client_id := f"serve-{uuid.uuid4().hex[:8]}")
    data = tmp_path / "data"
    data.mkdir()
    serve = Serve(broker, root, client_id, data)
    first = serve.start()
    sink = MqttSink(broker, client_id=f"{client_id}-pub", root=root)

    def publish() -> None:  # over ~2 s; the server dies in the middle of it
        for i in range(0, len(lines), 20):
            sink.write(lines[i:i + 20])
            time.sleep(0.04)

    publisher = threading.Thread(target=publish)
    publisher.start()
    wait_for(lambda: serve.shipment("S01") is not None, 60, serve.log.read_text)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert publisher.is_alive()  # killed mid-stream
    publisher.join()
    sink.close()
    second = serve.start()  # the store's log, then the broker's redeliveries
    fields = ("status", "last_position", "last_temp_c", "profile")

    def state(shipment_id: str) -> dict | None:
        view = serve.shipment(shipment_id)
        return view and {k: view[k] for k in fields}

    try:
        wait_for(lambda: all(state(s) == {k: v[k] for k in fields}
                             for s, v in want["state"]["shipments"].items()), 60,
                 serve.log.read_text)
        wanted = {(d["payload"], d["reason"]) for d in want["dead"]}  # at least once: a set

        def dead() -> set[tuple[str, str]]:  # written after the batch's state
            return {(d["payload"], d["reason"]) for d in dead_letters(data / "mqtt-dead.jsonl")}

        wait_for(lambda: dead() >= wanted, 10)
        assert dead() == wanted
    finally:
        serve.stop(second)


# --- the bridge (`mqtt-bridge`) ------------------------------------------------------------------

class Bridge:
    """`chainsight mqtt-bridge` processes of one deployment, on one persistent session."""

    def __init__(self, deployment, broker: Broker, root: str, client_id: str) -> None:
        self.deployment, self.broker, self.root, self.client_id = (
            deployment, broker, root, client_id)
        self.runs = 0

    def start(self) -> subprocess.Popen:
        cfg = self.deployment.config
        env = {**os.environ, "CHAINSIGHT_KAFKA_BOOTSTRAP": cfg.bootstrap,
               "CHAINSIGHT_TOPIC_PREFIX": cfg.topic_prefix,
               "CHAINSIGHT_PARTITIONS": str(cfg.partitions)}
        log = open(self.deployment.logs / f"bridge-{self.runs}.log", "wb")  # noqa: SIM115
        self.runs += 1
        return subprocess.Popen(
            [sys.executable, "-m", "chainsight.cli", "mqtt-bridge", "--mqtt", str(self.broker),
             "--mqtt-topic-root", self.root, "--mqtt-client-id", self.client_id],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def up(self, run: int) -> bool:
        """Whether the `run`th process (from 0) is connected and bridging."""
        return "bridging" in (self.deployment.logs / f"bridge-{run}.log").read_text()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.deployment.logs.glob("*.log")))


def test_bridge_killed_mid_stream_loses_and_duplicates_nothing(
        deployment, broker, root, sessions, tmp_path):
    lines = scenario(seed=3)
    want = expected(tmp_path, lines)
    rejected = {d["payload"].encode() for d in want["dead"]}
    valid = {canonical(orjson.loads(x)) for x in lines if x not in rejected}
    sessions.append(client_id := f"bridge-{uuid.uuid4().hex[:8]}")
    open_session(broker, client_id, root)
    bridge = Bridge(deployment, broker, root, client_id)
    first = bridge.start()

    def bridged() -> set[bytes]:
        return {canonical({k: v for k, v in e.items() if k != "_partition"})
                for e in deployment.read(deployment.config.events_topic)}

    sink = MqttSink(broker, client_id=f"{client_id}-pub", root=root)

    def publish() -> None:  # over ~6 s; the bridge dies in the middle of it
        for i in range(0, len(lines), 20):
            sink.write(lines[i:i + 20])
            if i == 20 * 40:
                publish_refused(sink, root)
            time.sleep(0.04)
        sink.close()

    publisher = threading.Thread(target=publish)
    publisher.start()
    wait_for(lambda: len(bridged()) > len(valid) // 3, 60, bridge.log_text)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert publisher.is_alive() and len(bridged()) < len(valid)  # killed mid-stream
    worker = deployment.start_worker()  # it finds the bridge's dead letters beside its own
    publisher.join()
    second = bridge.start()
    wait_for(lambda: bridged() >= valid, 90, bridge.log_text)
    wait_for(lambda: bridge.up(1), 30, bridge.log_text)  # so it handles SIGTERM
    assert bridged() == valid  # every valid event, nothing else (dead letters go elsewhere)

    deployment.sink.router.keys(lines)  # the stream time of what was sent, for the end marker
    deployment.sink.end_of_stream()
    deployment.sink.close()
    deployment.wait_processed()
    deployment.stop(worker)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, bridge.log_text()

    assert_same_alerts(deployment.alerts(), want["alerts"])
    assert deployment.shipments() == want["state"]["shipments"]
    dead = [{k: v for k, v in d.items() if k != "_partition"}
            for d in deployment.read(deployment.config.dead_letter_topic)]
    engine_dead = [d for d in dead if not refused(d, root)]
    assert set((d["payload"], d["reason"]) for d in engine_dead) == set(
        (d["payload"], d["reason"]) for d in want["dead"])  # at least once: a set
    assert all(d["topic"].startswith(f"{root}/") for d in dead)  # none from the workers
    assert_refused_dead_lettered(dead, root)


# --- the documented ACL ------------------------------------------------------------------

def private_broker(tmp_path, port: int, settings: str = "allow_anonymous true\n",
                   ) -> subprocess.Popen:
    """A Mosquitto of this test's own on `port` (one the test may stop), once it listens."""
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nuser {getuser()}\n{settings}")
    server = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                               str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def reachable() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(reachable, 15)
    return server


def test_healthz_shows_an_mqtt_ingest_away_from_its_broker(tmp_path):
    port = free_port()
    broker = private_broker(tmp_path, port)
    serve = Serve(Broker.parse(f"mqtt://127.0.0.1:{port}"), "chainsight", "serve-health",
                  tmp_path)
    proc = serve.start()  # healthy: connected
    try:
        broker.terminate()
        broker.wait(timeout=10)
        wait_for(lambda: httpx.get(f"{serve.url}/healthz").status_code == 503, 15)
        assert "MQTT ingest is not connected" in httpx.get(f"{serve.url}/healthz").json()["error"]
        broker = private_broker(tmp_path, port)
        wait_for(serve.healthy, 60, serve.log.read_text)  # reconnected by itself
    finally:
        serve.stop(proc)
        broker.terminate()
        broker.wait(timeout=10)


def test_the_documented_acl_keeps_each_device_to_its_own_topic(tmp_path):
    port = free_port()
    passwd = tmp_path / "passwd"
    for i, user in enumerate(("T1", "chainsight")):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user,
                        f"pw-{user}"], check=True, capture_output=True)
    acl = REPO / "docs" / "mosquitto" / "chainsight.acl"
    server = private_broker(tmp_path, port, "allow_anonymous false\n"
                            f"password_file {passwd}\nacl_file {acl}\n")
    try:
        def url(user: str) -> str:
            return f"mqtt://{user}:pw-{user}@127.0.0.1:{port}"

        got: list[tuple[str, bytes]] = []
        reader = Broker.parse(url("chainsight")).client("reader")
        reader.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
        connect(reader, Broker.parse(url("chainsight")))
        subscribe_all(reader, "chainsight")
        device = MqttSink(Broker.parse(url("T1")), client_id="T1")
        for topic, payload in ((device_topic("T1"), b"mine"), (device_topic("T2"), b"forged"),
                               (system_topic("erp"), b"forged"),
                               (device_topic("T1"), b"mine again")):
            device.publish(topic, payload)
        device.close()
        wait_for(lambda: len(got) >= 2, 10)
        time.sleep(0.5)
        assert got == [(device_topic("T1"), b"mine"), (device_topic("T1"), b"mine again")]
        with pytest.raises(ValueError, match="refused"):
            connect(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5),
                    Broker.parse(f"mqtt://127.0.0.1:{port}"))  # anonymous
        reader.disconnect()
        reader.loop_stop()
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- the simulator (`simulate --mqtt`) --------------------------------------------------------

def test_simulate_publishes_the_fleet_with_offline_bursts_as_arrays(broker, root, tmp_path):
    got: list[tuple[str, bytes]] = []
    reader = broker.client(f"sim-reader-{uuid.uuid4().hex[:8]}")
    reader.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
    connect(reader, broker)
    subscribe_all(reader, root)
    truth = tmp_path / "truth.json"
    proc = subprocess.run(
        [sys.executable, "-m", "chainsight.cli", "simulate", "--scenario", "smoke", "--mqtt",
         str(broker), "--mqtt-topic-root", root, "--ground-truth", str(truth)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = int(re.search(r"([\d,]+) lines", proc.stderr)[1].replace(",", ""))
    events = lambda payload: orjson.loads(payload) if payload[:1] == b"[" else [  # noqa: E731
        orjson.loads(payload)]
    wait_for(lambda: sum(len(events(p)) for _, p in got) >= lines, 60)
    reader.disconnect()
    reader.loop_stop()

    assert sum(len(events(p)) for _, p in got) == lines
    for topic, payload in got:
        for event in events(payload):
            device = event.get("reader_id") if event["type"] == "scan" else event.get(
                "device_id")
            if event["type"] == "order":
                assert topic == system_topic("simulator", root)
            else:
                assert topic == device_topic(device, root)
    bursts = Counter(topic for topic, p in got if p[:1] == b"[")
    offline = [f for f in orjson.loads(truth.read_bytes())["faults"]
               if f["type"] == "offline_buffer"]
    assert offline
    for fault in offline:  # the buffered fixes came in one array (two across a batch boundary)
        assert 1 <= bursts[device_topic(fault["device_id"], root)] <= 2
        arrays = [events(p) for t, p in got
                  if t == device_topic(fault["device_id"], root) and p[:1] == b"["]
        assert sum(map(len, arrays)) >= fault["events"]
