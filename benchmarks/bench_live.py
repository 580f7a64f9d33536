"""Live results on the embedded runtime: how soon people see an event, and an alert.

A producer thread submits live events (event time = wall clock) at a paced `--rate` to the
embedded runtime with a live engine and the default settings (allowed lateness 5 minutes), for
5,000 shipments: GPS fixes and reefer readings, some shipments on a fast bench profile whose
readings go out of range for 2 s out of every 4. A subscriber (as the API server is) reads the
live view of the shipments each output changed and times, p50/p99/max:

- event -> live state visible: from an event's time to its shipment's view showing it;
- completing reading -> alert published: from the reading that completes an excursion to its
  (provisional) alert leaving the engine.

    .venv/bin/python benchmarks/bench_live.py [--rate 10000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import orjson

from chainsight.config import Profile, load_profiles, load_settings
from chainsight.contract.times import now_ms, parse_time
from chainsight.engine.core import Engine, Output
from chainsight.runtimes.embedded import EmbeddedRuntime

SHIPMENTS = 5000
FAST = Profile("bench_fast", 2, 8, 0.02)  # an excursion opens after 1.2 s out of range


def produce(runtime: EmbeddedRuntime, rate: float, seconds: float, stop: threading.Event) -> int:
    step, sent, i = 0.01, 0, 0
    per_step = max(1, round(rate * step))
    start = time.perf_counter()
    while not stop.is_set() and time.perf_counter() - start < seconds:
        now = now_ms()
        batch = []
        for _ in range(per_step):
            s = i % SHIPMENTS
            if i % 10 == 0:
                hot = s % 50 == 0 and (now // 2000) % 2 == 0
                batch.append(orjson.dumps({"type": "sensor", "device_id": f"T{s}",
                                           "shipment_id": f"S{s}", "ts": now,
                                           "temp_c": 12.0 if hot else 5.0}))
            else:
                batch.append(orjson.dumps({"type": "gps", "device_id": f"G{s}",
                                           "shipment_id": f"S{s}", "ts": now,
                                           "lat": 52 + s / 1e4, "lon": 4 + i / 1e7}))
            i += 1
        runtime.submit(batch)
        sent += len(batch)
        pause = start + sent / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    settings = load_settings()
    engine = Engine(settings, {**load_profiles(), FAST.name: FAST}, live=True)
    runtime = EmbeddedRuntime(engine)
    state_ms: list[float] = []
    alert_ms: list[float] = []

    def seen(out: Output) -> None:  # on the engine's thread, as the API's subscriber is
        received = now_ms()
        views = engine.shipment_views(out.changed)
        state_ms.extend(received - parse_time(v["last_position"]["ts"])
                        for v in views.values() if v["last_position"] is not None)
        alert_ms.extend(received - parse_time(a["at"]) for a in out.alerts
                        if a["details"].get("transition") == "opened")

    runtime.subscribe(seen)
    runtime.start()
    orders = [orjson.dumps({"type": "order", "order_id": f"O{i}", "shipment_id": f"S{i}",
                            "ts": now_ms(), "status": "in_transit",
                            "product_profile": FAST.name if i % 50 == 0 else "ambient",
                            "device_ids": [f"G{i}", f"T{i}"]}) for i in range(SHIPMENTS)]
    runtime.submit(orders)
    time.sleep(2)
    state_ms.clear()
    alert_ms.clear()
    started = time.perf_counter()
    sent = produce(runtime, args.rate, args.seconds, threading.Event())
    rate = sent / (time.perf_counter() - started)
    runtime.stop()
    print(f"settings: allowed lateness {settings.allowed_lateness_min:g} min (default), "
          f"live results on; {SHIPMENTS:,} shipments, {rate:,.0f} events/s")
    for name, samples in (("event -> live state visible", state_ms),
                          ("completing reading -> alert published", alert_ms)):
        if not samples:
            print(f"{name}: no samples")
            continue
        ms = np.array(samples)
        print(f"{name}: p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} "
              f"ms, max {ms.max():.0f} ms ({len(ms):,} samples; target p99 <= 1000 ms)")


if __name__ == "__main__":
    main()
