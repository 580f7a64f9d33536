"""MQTT ingest: devices -> Mosquitto -> `chainsight serve --mqtt`'s engine, all on this machine.

1. The broker's ceiling: publisher processes (paho, QoS 1, one event per message) alone (the
   broker acknowledging, nobody subscribed), then with a plain paho subscriber (QoS 1,
   acknowledging each message as paho does by default) that only counts.
2. MQTT -> engine throughput: the same publishers, and the serve path instead of the counter
   (`chainsight.api.mqtt.mqtt_ingest`: batches through `POST /v1/events`'s ingest into the
   embedded runtime with its durable store, fsync'ed, acknowledged once durable). Measured live
   (publishers running) and draining a backlog the broker held for the persistent session.
3. Publish -> live state latency at `--rate` messages/s (a publisher paced like
   `live_fleet.send_paced`, event time = wall clock): for every event, the time its batch was
   processed (state updated, durable) minus its `ts`; p50/p99/max; beside it, the same
   publisher's latency to a plain paho subscriber (what the broker and client alone cost).

Default settings throughout (allowed lateness 5 minutes, the ingest's Receive Maximum and
batching). Needs the local Mosquitto (`scripts/services.sh start mosquitto`).

    .venv/bin/python benchmarks/bench_mqtt.py [--messages 60000] [--publishers 2] [--rate 5000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from live_fleet import FAST, SHIPMENTS, orders, send_paced

from chainsight.api.app import create_app
from chainsight.api.auth import TokenStore
from chainsight.api.mqtt import mqtt_ingest
from chainsight.config import load_profiles, load_settings
from chainsight.contract.times import now_ms
from chainsight.engine.core import Engine
from chainsight.ingest.mqtt import Broker, connect, device_topic, forget_session, system_topic
from chainsight.runtimes.embedded import EmbeddedRuntime
from chainsight.runtimes.store import Store
from chainsight.sim.mqtt import MqttSink

TARGET_EVENTS_S = 10_000
TARGET_P99_MS = 250


def fixes(worker: int, n: int) -> list[bytes]:
    """n GPS fixes of the live fleet's trucks, event time now, each with its own id."""
    now = now_ms()
    return [orjson.dumps({"type": "gps", "event_id": f"b{worker}-{i}", "device_id": f"G{s}",
                          "shipment_id": f"S{s}", "ts": now, "lat": 52 + s / 1e4,
                          "lon": 4 + i / 1e7})
            for i in range(n) for s in (i % SHIPMENTS,)]


def publish(url: str, root: str, worker: int, n: int, go: multiprocessing.Event) -> None:
    """A publisher process: n fixes as fast as the broker acknowledges them."""
    sink = MqttSink(Broker.parse(url), client_id=f"bench-pub-{root}-{worker}", root=root)
    lines = fixes(worker, n)
    go.wait()
    sink.write(lines)
    sink.close()


def publish_paced(url: str, root: str, rate: float, seconds: float) -> None:
    sink = MqttSink(Broker.parse(url), client_id=f"bench-paced-{root}", root=root)
    send_paced(sink.write, rate, seconds)
    sink.close()


def publishers(url: str, root: str, count: int, n: int) -> tuple[list, multiprocessing.Event]:
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=publish, args=(url, root, w, n // count, go))
             for w in range(count)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # spawned, connected and their payloads built
    return procs, go


def subscribe_all(client: mqtt.Client, root: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    client.subscribe([(device_topic("+", root), 1), (system_topic("+", root), 1)])
    assert done.wait(10), "no SUBACK"


def publishers_alone(url: str, n: int, count: int) -> float:
    """Messages/s the broker acknowledges to the publishers, with nobody subscribed."""
    procs, go = publishers(url, f"bench/{uuid.uuid4().hex[:8]}", count, n)
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    return n / (time.perf_counter() - start)


def broker_ceiling(broker: Broker, url: str, n: int, count: int) -> float:
    """Messages/s a plain paho subscriber receives (QoS 1) while `count` publishers send n."""
    root = f"bench/{uuid.uuid4().hex[:8]}"
    got, first, done = [0], [0.0], threading.Event()

    def on_message(*_: object) -> None:
        if got[0] == 0:
            first[0] = time.perf_counter()
        got[0] += 1
        if got[0] >= n:
            done.set()

    client = broker.client(f"bench-counter-{root}")
    client.on_message = on_message
    connect(client, broker)
    subscribe_all(client, root)
    procs, go = publishers(url, root, count, n)
    go.set()
    done.wait(300)
    seconds = time.perf_counter() - first[0]
    for p in procs:
        p.join()
    client.disconnect()
    client.loop_stop()
    return got[0] / seconds


class Served:
    """The serve path over a fresh data directory: runtime with store, app, MQTT ingest; each
    processed batch's completion time and lines are recorded."""

    def __init__(self, broker: Broker, root: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
        settings = load_settings()
        self.settings = settings
        engine = Engine(settings, {**load_profiles(), FAST.name: FAST}, live=True)
        self.store = Store(self.dir / "engine")
        self.store.recover(engine)  # opens the log, as `serve` does
        self.runtime = EmbeddedRuntime(engine, calls=self.store).start()
        app = create_app(self.runtime, TokenStore(self.dir))
        self.ingest = mqtt_ingest(app, broker, f"bench-serve-{root}", self.dir, root)
        self.batches: list[tuple[int, list[bytes]]] = []
        write = self.ingest.write

        def timed(lines: list[bytes]) -> list[tuple[int, str]]:
            rejected = write(lines)
            self.batches.append((time.time_ns(), lines))
            return rejected

        self.ingest.write = timed

    def events(self) -> int:
        return self.ingest.stats.events

    def wait(self, n: int, timeout_s: float = 300) -> float:
        """Seconds until n events were processed, from the first batch."""
        deadline = time.monotonic() + timeout_s
        while self.events() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ingest.failure is None, self.ingest.failure
        return (self.batches[-1][0] - self.batches[0][0]) / 1e9 if self.batches else 0.0

    def close(self, forget: bool = True) -> None:
        self.ingest.stop()
        self.runtime.stop()
        self.store.close()
        if forget:
            forget_session(self.ingest.broker, self.ingest.client_id)


def broker_latency(broker: Broker, url: str, rate: float, seconds: float) -> np.ndarray:
    """Publish -> receipt by a plain paho subscriber (ms), the paced publisher of `latency`."""
    root = f"bench/{uuid.uuid4().hex[:8]}"
    received: list[float] = []

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(time.time() * 1000 - orjson.loads(message.payload)["ts"])

    client = broker.client(f"bench-latency-{root}")
    client.on_message = on_message
    connect(client, broker)
    subscribe_all(client, root)
    proc = multiprocessing.get_context("spawn").Process(
        target=publish_paced, args=(url, root, rate, seconds))
    proc.start()
    proc.join()
    time.sleep(1.0)
    client.disconnect()
    client.loop_stop()
    return np.array(received)


def throughput_live(broker: Broker, url: str, n: int, count: int) -> float:
    root = f"bench/{uuid.uuid4().hex[:8]}"
    served = Served(broker, root)
    served.ingest.start()
    procs, go = publishers(url, root, count, n)
    go.set()
    seconds = served.wait(n)
    for p in procs:
        p.join()
    served.close()
    return n / seconds


def throughput_backlog(broker: Broker, url: str, n: int, count: int) -> float:
    """Events/s draining n messages the broker held while the ingest was away."""
    root = f"bench/{uuid.uuid4().hex[:8]}"
    served = Served(broker, root)
    served.ingest.start()  # creates the persistent session
    served.close(forget=False)
    procs, go = publishers(url, root, count, n)
    go.set()
    for p in procs:
        p.join()
    served = Served(broker, root)
    served.ingest.start()
    seconds = served.wait(n)
    served.close()
    return n / seconds


def latency(broker: Broker, url: str, rate: float, seconds: float) -> tuple[np.ndarray, int]:
    root = f"bench/{uuid.uuid4().hex[:8]}"
    served = Served(broker, root)
    served.ingest.start()
    sink = MqttSink(broker, client_id=f"bench-orders-{root}", root=root)
    sink.write(orders())
    sink.close()
    served.wait(SHIPMENTS)
    served.batches.clear()
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=publish_paced, args=(url, root, rate, seconds))
    proc.start()
    proc.join()
    time.sleep(1.0)
    served.close()
    lat = [done / 1e6 - orjson.loads(line)["ts"] for done, lines in served.batches
           for line in lines]
    return np.array(lat), len(lat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mqtt", default=os.environ.get("CHAINSIGHT_MQTT_URL",
                                                         "mqtt://127.0.0.1:1884"))
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    broker = Broker.parse(args.mqtt)
    n, count = args.messages, args.publishers
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores (load average {load}); broker {broker}; {n:,} messages "
          f"(QoS 1, one event each) from {count} paho publisher processes")

    alone = publishers_alone(args.mqtt, n, count)
    print(f"broker ceiling, publishers alone (no subscriber): {alone:>9,.0f} messages/s")
    ceiling = broker_ceiling(broker, args.mqtt, n, count)
    print(f"broker ceiling, plain paho subscriber counting:   {ceiling:>9,.0f} messages/s")
    live = throughput_live(broker, args.mqtt, n, count)
    print(f"MQTT -> engine, publishers running:               {live:>9,.0f} events/s "
          f"({live / ceiling:.2f} of the ceiling; target {TARGET_EVENTS_S:,}: "
          f"{live / TARGET_EVENTS_S:.2f}x)")
    drain = throughput_backlog(broker, args.mqtt, n, count)
    print(f"MQTT -> engine, draining a held backlog:          {drain:>9,.0f} events/s "
          f"(target {TARGET_EVENTS_S:,}: {drain / TARGET_EVENTS_S:.2f}x)")
    base = broker_latency(broker, args.mqtt, args.rate, args.seconds)
    print(f"publish -> plain paho subscriber at {args.rate:,.0f} messages/s: "
          f"p50 {np.percentile(base, 50):.0f} ms, p99 {np.percentile(base, 99):.0f} ms "
          "(the broker's own latency, for comparison)")
    ms, k = latency(broker, args.mqtt, args.rate, args.seconds)
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    print(f"publish -> live state at {args.rate:,.0f} messages/s ({k:,} events, "
          f"{args.seconds:g} s): p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {ms.max():.0f} ms "
          f"(target p99 <= {TARGET_P99_MS} ms: {TARGET_P99_MS / max(p99, 1e-9):.2f}x)")
    print("settings: defaults (allowed lateness 5 min, live engine, durable store fsync'ed per "
          "batch; ingest batches every 50 ms, Receive Maximum 10,000); load average now "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
