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
import time

import numpy as np
from live_fleet import FAST, SHIPMENTS, orders, send_paced

from chainsight.config import load_profiles, load_settings
from chainsight.contract.times import now_ms, parse_time
from chainsight.engine.core import Engine, Output
from chainsight.runtimes.embedded import EmbeddedRuntime


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
    runtime.submit(orders())
    time.sleep(2)
    state_ms.clear()
    alert_ms.clear()
    started = time.perf_counter()
    sent = send_paced(runtime.submit, args.rate, args.seconds)
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
